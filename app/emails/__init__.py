"""Email rendering: plain data in, strings out; no Flask, no database."""
