#!/usr/bin/env python3
"""A plain Python sync of SuperOffice contacts: the baseline of `cargo bench -p syncd --bench sync`.

What an integrator would write with the standard library only (urllib, json, hashlib, sqlite3):

- keyset pages of the contact list (`$filter=contactId gt LAST`, `$orderBy=contactId`, `$top=PAGE`);
- per record: canonical JSON (sorted keys), its SHA-256, and an upsert plus one change row when
  the hash differs from the stored one;
- one transaction per page, the resume position stored in the same transaction;
- the same SQLite durability as syncd (WAL, synchronous=FULL).

`--shape entity` reads the pages for the ids only (`$select=contactId`) and GETs each contact
(`/api/v1/Contact/{id}`) with 8 threads, as syncd's entity shape does with `concurrency = 8`.

Prints one JSON line: {"rows": N, "seconds": S, "requests": R}.
"""

import argparse
import hashlib
import http.client
import json
import sqlite3
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, json TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER NOT NULL,
    op TEXT NOT NULL, hash TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, after INTEGER NOT NULL);
"""


class Api:
    """One keep-alive HTTP connection per thread to the tenant's REST root."""

    def __init__(self, root, token):
        url = urllib.parse.urlsplit(root)
        self.host = url.hostname
        self.port = url.port
        self.prefix = url.path.rstrip("/")
        self.headers = {"Authorization": "Bearer " + token, "Accept": "application/json"}
        self.local = threading.local()
        self.requests = 0
        self.lock = threading.Lock()

    def get(self, path, query=None):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            self.local.conn = conn
        target = self.prefix + path
        if query:
            target += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote, safe="$,")
        conn.request("GET", target, headers=self.headers)
        response = conn.getresponse()
        body = response.read()
        with self.lock:
            self.requests += 1
        if response.status != 200:
            raise RuntimeError(f"GET {target}: HTTP {response.status}: {body[:200]!r}")
        return json.loads(body)


def pages(api, select, page):
    """Keyset pages of the contact list, in id order."""
    after = 0
    while True:
        body = api.get(
            "/api/v1/Contact",
            {
                "$select": ",".join(select),
                "$filter": f"contactId gt {after}",
                "$orderBy": "contactId",
                "$top": str(page),
            },
        )
        rows = body["value"]
        if rows:
            after = rows[-1]["contactId"]
        yield rows, after
        if len(rows) < page:
            return


def store_page(db, records, after):
    """Upserts (id, record) pairs whose hash changed, with a change row each, and the cursor."""
    now = time.time()
    with db:
        for record_id, record in records:
            text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            digest = hashlib.sha256(text.encode()).hexdigest()
            old = db.execute("SELECT hash FROM records WHERE id = ?", (record_id,)).fetchone()
            if old is not None and old[0] == digest:
                continue
            db.execute(
                "INSERT INTO records (id, json, hash) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET json = excluded.json, hash = excluded.hash",
                (record_id, text, digest),
            )
            db.execute(
                "INSERT INTO changes (id, op, hash, at) VALUES (?, ?, ?, ?)",
                (record_id, "insert" if old is None else "update", digest, now),
            )
        db.execute("INSERT OR REPLACE INTO cursor (name, after) VALUES ('contact', ?)", (after,))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="tenant REST root, e.g. http://127.0.0.1:8080/Cust1")
    parser.add_argument("--token", required=True, help="bearer access token")
    parser.add_argument("--db", required=True, help="SQLite file")
    parser.add_argument("--shape", choices=["row", "entity"], default="row")
    parser.add_argument("--columns", default="name,department,orgnr,category")
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    db = sqlite3.connect(args.db, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(SCHEMA)
    db.isolation_level = ""  # `with db:` opens and commits one transaction per page

    api = Api(args.root, args.token)
    started = time.monotonic()
    rows = 0
    if args.shape == "row":
        select = ["contactId", "updatedDate", "registeredDate"] + args.columns.split(",")
        for page, after in pages(api, select, args.page):
            store_page(db, [(row["contactId"], row) for row in page], after)
            rows += len(page)
    else:
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            for page, after in pages(api, ["contactId", "updatedDate"], args.page):
                ids = [row["contactId"] for row in page]
                entities = pool.map(lambda i: api.get(f"/api/v1/Contact/{i}"), ids)
                store_page(db, list(zip(ids, entities)), after)
                rows += len(page)
    seconds = time.monotonic() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "requests": api.requests}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
