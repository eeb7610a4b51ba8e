"""Every tunable knob of fedsilo, in one place, with its unit and the reason for its value.

Nothing else in the code base hard-codes a timeout, a size limit or a key length: import it
from here. ``docs/configuration.md`` carries the same table for operators; a test keeps the two
in step.
"""

from __future__ import annotations

# --- transport ---------------------------------------------------------------------------------
#: bytes per streamed frame. gRPC's default receive limit is 4 MiB; 1 MiB frames keep each
#: message far below it while amortising per-frame overhead.
CHUNK_BYTES: int = 1 << 20
#: bytes, hard ceiling for one gRPC message in either direction (frames are 1 MiB; a little
#: slack for the header). Anything larger is refused by gRPC itself with RESOURCE_EXHAUSTED.
GRPC_MAX_MESSAGE_BYTES: int = 4 << 20
#: bytes, ceiling for one whole logical protocol message after reassembly (a 10M-row PSI batch is
#: sent in batches far smaller than this). Protects a silo from memory exhaustion.
MAX_LOGICAL_MESSAGE_BYTES: int = 1 << 30
#: seconds, deadline for quick control calls (health, describe, open/close a job).
CONTROL_DEADLINE_S: float = 30.0
#: seconds, deadline for one protocol step (one histogram round, one PSI batch).
STEP_DEADLINE_S: float = 600.0
#: attempts for idempotent calls (health, describe) before a silo is declared unreachable.
IDEMPOTENT_RETRIES: int = 4
#: seconds, first backoff between retries; doubles on every attempt.
RETRY_BACKOFF_S: float = 0.25
#: worker threads of a silo's gRPC server. Protocol steps are CPU bound and use processes.
SERVER_THREADS: int = 8
#: seconds a silo keeps an idle job session in memory before dropping it.
SESSION_IDLE_TIMEOUT_S: float = 3600.0

# --- data ----------------------------------------------------------------------------------------
#: rows per chunk when a silo reads its tables; bounds memory independently of table size.
READ_CHUNK_ROWS: int = 50_000
#: rows per chunk when scores are written back (one transaction per chunk: resumable).
WRITE_CHUNK_ROWS: int = 10_000

# --- cryptography --------------------------------------------------------------------------------
#: bits, default Paillier modulus. NIST SP 800-57 puts 2048-bit RSA-type moduli at 112-bit security.
PAILLIER_KEY_BITS: int = 2048
#: bits, smallest Paillier modulus accepted without the explicit ``insecure`` option.
PAILLIER_MIN_SECURE_BITS: int = 2048
#: CKKS polynomial modulus degree; 8192 with the coefficient moduli below gives 128-bit security
#: (HE standard table) and 4096 slots.
CKKS_POLY_MODULUS_DEGREE: int = 8192
CKKS_COEFF_MOD_BIT_SIZES: tuple[int, ...] = (60, 40, 40, 60)
#: CKKS scale (2**40): about 1e-7 relative precision on sums of gradients.
CKKS_GLOBAL_SCALE: int = 2**40
#: smallest number of silos in a secure aggregation: with two, the sum minus one's own input
#: reveals the other's input.
MIN_SECURE_AGGREGATION_SILOS: int = 3

# --- PSI -----------------------------------------------------------------------------------------
#: ids per PSI batch on the wire and in memory (32 bytes per blinded point).
PSI_BATCH_IDS: int = 200_000
#: ids per task sent to a worker process when blinding. Small enough that the cores finish a batch
#: together (a task is ~50 ms, so the last one idles a core briefly), large enough that IPC (64 KiB
#: of points) is negligible next to ~25 µs of curve arithmetic per id.
PSI_WORK_CHUNK_IDS: int = 2048
#: which vetted X25519 implementation blinds points: "openssl" (``cryptography``) or "libsodium"
#: (PyNaCl). Both are constant time; OpenSSL measured ~25 µs/op against libsodium's ~29 µs/op on
#: the project machine (``bench/bench_psi.py --primitives``), so it is the default.
PSI_X25519_BACKEND: str = "openssl"
#: bytes, longest id accepted after UTF-8 encoding; longer values are refused as bad data rather
#: than hashed, because no real customer key is that long and a huge one is a data-layer bug.
PSI_MAX_ID_BYTES: int = 1024

# --- policy defaults (a silo's config may only tighten them) ------------------------------------
#: rows, smallest intersection a silo accepts by default.
DEFAULT_MIN_INTERSECTION: int = 100
#: rows, smallest number of records behind any statistic a silo releases.
DEFAULT_MIN_ROWS_PER_STATISTIC: int = 10

# --- silo data layer (silo_node/data.py, silo_node/store.py) -----------------------------------
#: values sampled per column when a column's type cannot be checked exactly in SQL (a query
#: source on a database other than SQLite); enough to catch a text column, cheap on 10M rows.
VALIDATE_SAMPLE_ROWS: int = 1000
#: ids per ``IN (...)`` list when looking up a batch of rows by id: below SQLite's 32,766 and
#: PostgreSQL's 65,535 bound-parameter limits, and short enough for the planner to use an index.
LOOKUP_IDS_PER_QUERY: int = 5_000
#: seconds a SQLite connection waits for another writer (e.g. a long alignment insert) before
#: giving up; the ledger must not fail because an alignment is being written.
SQLITE_BUSY_TIMEOUT_S: float = 60.0
#: attempts to append a ledger entry when another process took the same sequence number.
LEDGER_APPEND_RETRIES: int = 5
