"""Run under mpirun by tests/test_mpi.py: each rank uploads its share of a
tree with ranks=True and records what it wrote; rank 0's summary goes to
stderr.  argv: SOURCE_DIR DEST_DIR RECORD_DIR"""
import json
import os
import sys

import s3dlio
from s3dlio import ranks

source, dest, record = sys.argv[1:4]
where = ranks.world()
try:
    written = s3dlio.upload(source, f"file://{dest}/", ranks=True)
    outcome = {"rank": where.rank, "size": where.size, "written": written, "error": None}
    code = 0
except s3dlio.S3dlioError as exc:
    outcome = {"rank": where.rank, "size": where.size, "written": [], "error": str(exc)}
    code = 3
with open(os.path.join(record, f"rank-{where.rank}.json"), "w") as f:
    json.dump(outcome, f)
sys.exit(code)
