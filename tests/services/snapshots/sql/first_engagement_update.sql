UPDATE deliveries AS d SET opened_at = v.opened_at, human_opened_at = v.human_opened_at,
    clicked_at = v.clicked_at, human_clicked_at = v.human_clicked_at,
    petition_clicked_at = v.petition_clicked_at,
    human_petition_clicked_at = v.human_petition_clicked_at, updated_at = now()
FROM unnest(%(ids)b::bigint[], %(opened_at)b::timestamptz[], %(human_opened_at)b::timestamptz[],
    %(clicked_at)b::timestamptz[], %(human_clicked_at)b::timestamptz[],
    %(petition_clicked_at)b::timestamptz[], %(human_petition_clicked_at)b::timestamptz[])
    AS v(id, opened_at, human_opened_at, clicked_at, human_clicked_at, petition_clicked_at,
        human_petition_clicked_at)
WHERE d.id = v.id;
