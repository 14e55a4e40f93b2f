"""Time the member import end to end (parse + COPY + upsert) against a plain COPY of the file.

Run from the repository root::

    python -m benchmarks.import [--rows N] [--seed S] [--database-url URL] [--keep] [--steps]
                                [--again] [--members N]

The CSV (realistic Canadian names, locals and postal codes, about 1% invalid rows and 0.5%
duplicates) is generated once by benchmarks.data in a child process and cached under
var/benchmarks/. A throwaway database is created on the server of --database-url (default
postgresql://postgres@127.0.0.1:5432/postgres), migrated, and dropped at the end (unless
--keep). The import goes through imports.import_members, the code path of
`flask members import`, into a list "All members", and is committed. In the same run the
file's bytes are COPYed into an empty one-column table (each line a row; FORMAT text, LATIN1
so that the deliberately broken bytes pass, CRLF turned into LF): the speed of PostgreSQL
taking the file with no parsing, validation or upsert, which bounds what any import can do.

Then the rows the import wrote are COPYed (binary, no validation) into empty tables with the
same indexes as members and subscriptions: the reference the import is held to (issue 15).

The last line printed is one JSON object: rows, seconds, rows_per_s, copy_rows_per_s, ratio
(import speed / plain COPY speed), indexed_copy_rows_per_s (file rows / seconds of the
indexed COPY), indexed_ratio (the import's speed / that: target >= 0.7),
indexed_copy_cpu_us_per_row and indexed_cpu_ratio (PostgreSQL's CPU for that COPY / the
larger of the import's database and parser CPU: the ratio without the host's other load),
peak_rss_mb (of
this process, which parses the file), cpu_s and cpu_us_per_row (this process: load, and
postgres: the database's backends; benchmarks/harness.py), loadavg.
"""

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from benchmarks.harness import CpuMeter, cpu_line, load_average

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _data_file(rows: int, seed: int) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.data", "--rows", str(rows), "--seed", str(seed)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(result.stdout.strip().splitlines()[-1])


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _plain_copy(database: str, path: Path) -> float:
    with psycopg.connect(_libpq(database)) as conn:
        conn.execute("CREATE TABLE plain_copy (line text)")
        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy(
                "COPY plain_copy FROM STDIN WITH (FORMAT text, DELIMITER E'\\x01', "
                "ENCODING 'LATIN1')"
            ) as copy,
            path.open("rb") as stream,
        ):
            while chunk := stream.read(1 << 20):
                # One line ending throughout (the writer used CRLF, quoted newlines are LF).
                copy.write(chunk.replace(b"\r\n", b"\n"))
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE plain_copy")
        conn.commit()
    return seconds


def _columns(conn: psycopg.Connection, table: str) -> str:
    """The table's stored columns (generated ones are computed by the COPY, not written)."""
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
        "AND table_schema = current_schema() AND is_generated = 'NEVER' "
        "ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return ", ".join(f'"{name}"' for (name,) in rows)


def _indexed_copy(
    database: str, workdir: Path, members_before: int = 0
) -> tuple[float, dict[str, int], float]:
    """COPY the rows the import wrote into empty tables indexed like members and subscriptions.

    The rows are the import's own (read back with COPY TO into files, untimed), so the
    reference writes exactly what the import wrote, with the same primary keys, unique and
    secondary indexes (`CREATE TABLE … (LIKE … INCLUDING ALL)`; no foreign keys, which the
    import skips for its new members too), in one transaction, after a CHECKPOINT, with no
    parsing, validation or upsert: what PostgreSQL needs to store these rows at all. The
    `members_before` seeded by --members (the first ids, with no subscription) are left out.
    Returns (seconds of the timed COPYs, rows per table, PostgreSQL's CPU seconds for them).
    """
    tables = ("members", "subscriptions")
    counts: dict[str, int] = {}
    with psycopg.connect(_libpq(database)) as conn:
        columns = {table: _columns(conn, table) for table in tables}
        first_id = conn.execute(
            "SELECT COALESCE(min(id), 0) FROM (SELECT id FROM members ORDER BY id OFFSET %s) m",
            (members_before,),
        ).fetchone()[0]
        written = {"members": f"id >= {int(first_id)}", "subscriptions": "true"}
        for table in tables:
            query = f"SELECT {columns[table]} FROM {table} WHERE {written[table]}"  # noqa: S608
            with (
                conn.cursor() as cursor,
                cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as copy,
                (workdir / f"{table}.copy").open("wb") as out,
            ):
                for data in copy:
                    out.write(data)
            counts[table] = int(
                conn.execute(f"SELECT count(*) FROM {table} WHERE {written[table]}").fetchone()[0]  # noqa: S608
            )
            conn.execute(f"CREATE TABLE scratch_{table} (LIKE {table} INCLUDING ALL)")
        conn.commit()
        try:
            conn.execute("CHECKPOINT")
            conn.commit()
        except psycopg.Error:
            conn.rollback()
        meter = CpuMeter(_libpq(database), {}).start()
        started = time.perf_counter()
        for table in tables:
            with (
                conn.cursor() as cursor,
                cursor.copy(
                    f"COPY scratch_{table} ({columns[table]}) FROM STDIN (FORMAT binary)"
                ) as copy,
                (workdir / f"{table}.copy").open("rb") as stream,
            ):
                while chunk := stream.read(1 << 20):
                    copy.write(chunk)
        conn.commit()
        seconds = time.perf_counter() - started
        cpu = meter.stop()["postgres"]
        for table in tables:
            conn.execute(f"DROP TABLE scratch_{table}")
            (workdir / f"{table}.copy").unlink()
        conn.commit()
    return seconds, counts, cpu


def main() -> None:
    """Generate the data, import it, COPY it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database")
    parser.add_argument("--steps", action="store_true", help="log the time of each import step")
    parser.add_argument(
        "--again",
        action="store_true",
        help="import the same file a second time (every member exists: the monthly refresh)",
    )
    parser.add_argument(
        "--members",
        type=int,
        default=0,
        help="members already in the table before the import (addresses not in the file)",
    )
    args = parser.parse_args()
    if args.steps:
        logging.basicConfig(format="%(relativeCreated)8.0f ms %(message)s")
        logging.getLogger("app.services.audience.imports").setLevel(logging.DEBUG)

    started = time.perf_counter()
    path = _data_file(args.rows, args.seed)
    print(
        f"data: {path} ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s)"
    )

    server = make_url(args.database_url)
    name = f"rallypoint_bench_import_{uuid.uuid4().hex[:8]}"
    admin = _libpq(server.set(database="postgres").render_as_string(hide_password=False))
    database = server.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        meter = CpuMeter(_libpq(database), {})
        figure = _run(database, path, again=args.again, meter=meter, members=args.members)
        cpu = meter.stop()
        per_row = meter.per_unit(int(figure["rows"]))
        copy_seconds = _plain_copy(database, path)
        indexed_seconds, written, copy_cpu = _indexed_copy(database, path.parent, args.members)
    finally:
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    rows = figure["rows"]
    figure["copy_rows_per_s"] = round(rows / copy_seconds)
    figure["ratio"] = round(figure["rows_per_s"] / figure["copy_rows_per_s"], 3)
    # The same file rows over the time PostgreSQL needs to COPY what the import wrote.
    figure["indexed_copy_rows_per_s"] = round(rows / indexed_seconds)
    figure["indexed_ratio"] = round(figure["rows_per_s"] / figure["indexed_copy_rows_per_s"], 3)
    figure["indexed_copy_rows"] = written
    # CPU, which a busy host does not stretch: what the indexed COPY costs PostgreSQL, against
    # the import's longer side (its backend and its parser run on a core each, side by side):
    # the ratio a quiet 2-core host would show.
    figure["indexed_copy_cpu_us_per_row"] = round(copy_cpu / rows * 1e6, 1)
    figure["indexed_cpu_ratio"] = round(copy_cpu / max(cpu["postgres"], cpu["load"], 1e-9), 3)
    figure["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    figure["cpu_s"] = cpu
    figure["cpu_us_per_row"] = per_row
    figure["loadavg"] = load_average()
    print(f"plain COPY of the file: {copy_seconds:.2f} s")
    print(
        f"indexed COPY of the {written} rows the import wrote: {indexed_seconds:.2f} s "
        f"({figure['indexed_copy_rows_per_s']:,} file rows/s); import ratio "
        f"{figure['indexed_ratio']}"
    )
    print(cpu_line("import", cpu, per_row, "row"))
    print(json.dumps(figure))


def _run(
    database: str,
    path: Path,
    *,
    again: bool = False,
    meter: CpuMeter | None = None,
    members: int = 0,
) -> dict[str, float]:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.services.audience import imports, lists
    from config.settings import config_from_env

    app = create_app(
        config_from_env(
            {"RALLYPOINT_ENV": "development", "DATABASE_URL": database, "LOG_LEVEL": "WARNING"}
        )
    )
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        mailing_list = lists.create_list(db.session, name="All members")
        if members:
            db.session.execute(
                sa.text(
                    "INSERT INTO members (email, first_name, last_name, language, postal_code, "
                    "local, attributes, consent_source, created_at, updated_at) "
                    "SELECT 'earlier' || n || '@example.net', 'First', 'Last', 'en', '', '', "
                    "'{}', '', now(), now() FROM generate_series(1, :n) n"
                ),
                {"n": members},
            )
            db.session.execute(sa.text("ANALYZE members"))
        db.session.commit()
        # Start from a clean slate: dirty pages and WAL that earlier runs (or the migrations)
        # left are written now, not during the timed import (needs superuser or pg_checkpoint;
        # skipped otherwise). The timed import's own checkpoints still count.
        try:
            with db.engine.connect() as conn:
                conn.exec_driver_sql("CHECKPOINT")
        except Exception as exc:  # a plain role may not; measure anyway
            print(f"no CHECKPOINT before the import ({type(exc).__name__})")
        rss_before = _peak_rss_mb()
        timings = []
        for label in ("import", "again")[: 2 if again else 1]:
            if meter is not None and label == "import":
                meter.start()
            started = time.perf_counter()
            _job, report = imports.import_members(
                db.session,
                path=path,
                list_id=mailing_list.id,
                origin="cli",
                consent=imports.ImportConsent.MEMBERSHIP,
            )
            db.session.commit()
            seconds = time.perf_counter() - started
            if meter is not None and label == "import":
                meter.stop()
            timings.append(seconds)
            print(
                f"{label}: {report.rows} rows in {seconds:.2f} s — {report.added} added, "
                f"{report.updated} updated, {report.unchanged} unchanged, "
                f"{report.skipped} skipped {report.skip_reasons}; {report.subscribed} subscribed"
            )
        db.session.remove()
        db.engine.dispose()
    print(f"rss before the import {rss_before:.1f} MB, peak {_peak_rss_mb():.1f} MB")
    figure = {
        "rows": report.rows,
        "seconds": round(timings[0], 3),
        "rows_per_s": round(report.rows / timings[0]),
    }
    if again:
        figure["again_rows_per_s"] = round(report.rows / timings[1])
    return figure


if __name__ == "__main__":
    main()
