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
#: seconds, deadline for closing a job's session after the job failed: best effort (an unclosed
#: session expires after ``SESSION_IDLE_TIMEOUT_S``), so a dead silo must not hold up the failure.
CLOSE_DEADLINE_S: float = 5.0
#: seconds between the coordinator's HTTP/2 keepalive pings on a channel with a call in flight.
#: A silo that hangs (stopped process, frozen host) keeps its TCP connection open and answers
#: nothing; without pings a step would wait out ``STEP_DEADLINE_S``. Silo servers accept pings
#: this often, even while a long step sends no data (``silo_node/server.py``).
GRPC_KEEPALIVE_TIME_S: float = 10.0
#: seconds the coordinator waits for a keepalive ping's answer before it closes the connection
#: and fails its calls UNAVAILABLE: a hung silo fails its job within about the sum of the two.
GRPC_KEEPALIVE_TIMEOUT_S: float = 10.0
#: seconds, longest wait between the coordinator's attempts to reconnect to a silo that went
#: away (gRPC's default grows to 120 s): a restarted silo is back in the next job within this.
GRPC_MAX_RECONNECT_BACKOFF_S: float = 5.0
#: attempts for idempotent calls (health, describe) before a silo is declared unreachable.
IDEMPOTENT_RETRIES: int = 4
#: seconds, first backoff between retries; doubles on every attempt.
RETRY_BACKOFF_S: float = 0.25
#: worker threads of a silo's gRPC server. Protocol steps are CPU bound and use processes.
SERVER_THREADS: int = 8
#: calls a silo serves at once, all callers together, except health checks and Describe: below
#: ``SERVER_THREADS`` so that 2 threads always remain for those, whatever job streams do (gRPC's
#: sync server holds a thread for a stream's whole life). A call beyond it is refused at once
#: with RESOURCE_EXHAUSTED, never queued.
MAX_JOB_CALLS: int = 6
#: calls one caller identity (certificate name, or host with ``insecure_plaintext``) may have in
#: progress at a silo: a coordinator runs one step per silo and job at a time, so 4 allows a few
#: concurrent jobs while one caller cannot take all of ``MAX_JOB_CALLS``.
MAX_JOB_CALLS_PER_CALLER: int = 4
#: seconds a silo waits for the next frame of a step request, or for the caller to take the next
#: reply frame, before it ends the call: a stalled caller must not hold a thread. A 1 MiB frame
#: needs this long only below ~280 kbit/s.
STEP_STREAM_IDLE_TIMEOUT_S: float = 30.0
#: seconds, longest a silo spends receiving one step request (and again sending one reply): the
#: coordinator's whole step deadline (``STEP_DEADLINE_S``), so a slower transfer could not succeed
#: anyway; bounds a caller that trickles a frame just inside the idle timeout.
STEP_STREAM_MAX_TRANSFER_S: float = 600.0
#: seconds a silo keeps an idle job session in memory before dropping it.
SESSION_IDLE_TIMEOUT_S: float = 3600.0
#: job sessions one caller identity may hold open at a silo (idle ones expire first): each holds
#: per-job keys and protocol state in memory; a coordinator runs one job at a time, so 16 leaves
#: room for sessions whose close was lost. OpenJob beyond it is refused with RESOURCE_EXHAUSTED.
MAX_OPEN_SESSIONS_PER_CALLER: int = 16
#: job sessions a silo holds open for all callers together (see ``MAX_OPEN_SESSIONS_PER_CALLER``).
MAX_OPEN_SESSIONS: int = 64
#: seconds between a running job's checks of its cancel flag in the coordinator's store
#: (``fedsilo jobs cancel``): a cancelled job stops its calls within about this.
CANCEL_POLL_S: float = 0.25
#: seconds, shortest interval between writes of a job's progress to the coordinator's store (what
#: ``run --coordinator`` and ``jobs logs --follow`` show); a task's end is written at once.
PROGRESS_WRITE_S: float = 0.5
#: seconds between the coordinator's looks for new events of a watched job (``WatchJob``,
#: ``jobs logs --follow``).
WATCH_POLL_S: float = 0.5

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
#: bits, largest Paillier modulus a silo accepts from a peer or makes for a job: 8192 is above
#: NIST SP 800-57's 192-bit level (7680) and already costs ~60x a 2048-bit key per operation;
#: without a ceiling a peer's key could make every ciphertext operation arbitrarily slow.
PAILLIER_MAX_BITS: int = 8192
#: CKKS polynomial modulus degree; 8192 with the coefficient moduli below gives 128-bit security
#: (HE standard table) and 4096 slots.
CKKS_POLY_MODULUS_DEGREE: int = 8192
#: bits of each CKKS coefficient modulus prime: 60 + 40 + 40 + 60 = 200 bits, within the 218 the
#: HE standard allows at degree 8192 for 128-bit security; the 40-bit middle primes match the scale.
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
#: (PyNaCl). Both are constant time; OpenSSL measured 31.8 µs/op against libsodium's 35.8 µs/op
#: on the project machine (``bench/bench_psi.py --primitives``), so it is the default.
PSI_X25519_BACKEND: str = "openssl"
#: ids, largest ``psi_pad_to_multiple`` a silo policy may set. Padding costs up to that many
#: extra blindings per party (~30 µs of CPU each); a bucket of a million ids already hides a set
#: size well, and a larger one is most likely a typo.
PSI_MAX_PAD_MULTIPLE: int = 1_000_000
#: bytes, longest id accepted after UTF-8 encoding; longer values are refused as bad data rather
#: than hashed, because no real customer key is that long and a huge one is a data-layer bug.
PSI_MAX_ID_BYTES: int = 1024

# --- policy defaults (a silo's config may only tighten them) ------------------------------------
#: rows, smallest intersection a silo accepts by default.
DEFAULT_MIN_INTERSECTION: int = 100
#: rows, smallest number of records behind any statistic a silo releases.
DEFAULT_MIN_ROWS_PER_STATISTIC: int = 10

# --- certificates (crypto/certs.py, ``fedsilo certs ...``) ----------------------------------------
#: days a consortium CA is valid: re-keying a whole consortium is an event, not a routine.
CERT_CA_DAYS: int = 3650
#: days a party certificate is valid (the CA/Browser Forum's former 825-day ceiling).
CERT_DAYS: int = 825
#: host names and addresses every party certificate answers to besides its identity;
#: ``fedsilo certs issue --host`` adds to these.
CERT_DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")

# --- evaluation reports (ml/metrics.py) ----------------------------------------------------------
#: score thresholds of the precision/recall table when the caller names none (probabilities;
#: they span the usual operating points of credit-default and fraud models).
METRICS_DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
#: number of lift deciles and calibration bins.
METRICS_DEFAULT_BINS: int = 10
#: most points kept on a released curve; enough for a smooth plot, small in JSON.
METRICS_MAX_CURVE_POINTS: int = 201
#: review rates of the precision-at-review table: the share of rows, highest scores first, a
#: team can inspect (fraud analysts review about the top 1 % of payments).
METRICS_REVIEW_RATES: tuple[float, ...] = (0.005, 0.01, 0.05)

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

# --- logistic regression (ml/lr_common.py, protocols/lr/vertical.py, protocols/hlr/horizontal.py)
#: L2 strength on the mean loss, ``(l2/2)*||w||^2``; scikit-learn's C is ``1/(l2*N)``, so 1e-4 is
#: C=1 at 10k rows. Small: standardised features and thousands of rows barely need shrinkage.
LR_L2: float = 1e-4
#: vertical LR step size and per-epoch decay factor ("step" schedule). Measured on default credit
#: (24k rows, 2048-row batches): within 0.001 AUC of scikit-learn after the first epoch.
LR_LEARNING_RATE: float = 2.0
#: factor the vertical LR step size is multiplied by after each epoch (see ``LR_LEARNING_RATE``).
LR_DECAY: float = 0.5
#: rows per vertical mini-batch: large batches amortise the per-batch Paillier work (a fresh
#: r^n and a decryption per packed gradient ciphertext) and reveal coarser gradients.
LR_BATCH_ROWS: int = 2048
#: rows, smallest mini-batch accepted: a passive party learns its gradient X_j^T r for every
#: batch, and with few rows it could solve that for the label holder's residuals.
LR_MIN_BATCH_ROWS: int = 100
#: epochs (vertical) before training stops even if not converged; and the largest value a job may
#: ask for, which bounds how many gradients a passive party sees.
LR_MAX_EPOCHS: int = 10
#: epochs, the largest ``max_iter`` (epochs) an LR job may ask for (see ``LR_MAX_EPOCHS``).
LR_MAX_EPOCHS_LIMIT: int = 200
#: vertical convergence: stop when the epoch's training loss falls by less than this fraction.
LR_TOL: float = 1e-3
#: standard deviation of the label holder's secret starting linear predictor in vertical LR
#: (standardised units; coefficients and intercept drawn at random, never sent): with all weights
#: at zero a passive party's first gradient would give it its exact per-feature label sums.
#: Wide enough that sigmoid(z) spans ~0.1-0.9, narrow enough not to saturate (docs/leakage.md).
LR_INIT_STD: float = 1.5
#: a feature whose standard deviation is below this is constant: scale 1, coefficient stays 0.
LR_MIN_FEATURE_STD: float = 1e-12
#: fixed-point bits after the binary point of a passive party's standardised features when they
#: become Paillier exponents (2**-8 ~ 0.004 of a standard deviation; only the gradient uses the
#: rounded values). Fewer bits, fewer multiplications: 8 bits took 0.13 s against 10 bits' 0.16 s
#: (2048 rows x 10 features, one core), and the rounding changes no AUC digit we report.
LR_FEATURE_FRAC_BITS: int = 8
#: fixed-point bits of the encrypted weighted residuals: they live inside the ciphertext, so
#: precision is free (plaintext space is 2048 bits); 2**-40 makes rounding invisible.
LR_RESIDUAL_FRAC_BITS: int = 40
#: fixed-point bits of partial linear predictors sent masked mod 2**64 to the label holder.
LR_PARTIAL_FRAC_BITS: int = 24
#: window of the bucket (Pippenger) multi-exponentiation that turns encrypted residuals and a
#: feature column into an encrypted gradient. Per window every row costs one multiplication and
#: the buckets 2*2**w; with 8-bit features most exponents fit one 8-bit window (2048 rows x 10
#: features, one core: w=6 0.14 s, w=8 0.13 s; the machine's load moves both by 2x).
LR_MULTIEXP_WINDOW_BITS: int = 8
#: rows per task when the multi-exponentiation is spread over the process pool.
LR_WORK_CHUNK_ROWS: int = 1024
#: packed gradient ciphertexts the label holder opens per passive party and batch (28 features
#: fit one at 2048 bits, so 16 allow ~450): bounds what a deviating passive party could have
#: decrypted by sending other ciphertexts in place of its gradient.
LR_MAX_GRADIENT_CIPHERTEXTS: int = 16
#: largest class weight vertical LR accepts. It is public, so a passive party can size the slots
#: of its packed gradient without learning the label holder's weights (``balanced`` on a 1:10000
#: fraud set is ~5000).
LR_MAX_CLASS_WEIGHT: float = 10_000.0
#: horizontal LR (FedAvg) local step size, per-round decay ("step"), local mini-batch rows,
#: rounds before stopping, and the largest coefficient change that still counts as moving.
#: Measured on default credit (3 x 8k rows): within 0.002 AUC of pooled scikit-learn by round 10.
HLR_LEARNING_RATE: float = 0.5
#: factor the horizontal LR local step size is multiplied by after each round.
HLR_DECAY: float = 0.8
#: rows per local mini-batch of horizontal LR at each silo.
HLR_LOCAL_BATCH_ROWS: int = 256
#: rounds of horizontal LR before training stops even if not converged.
HLR_MAX_ROUNDS: int = 30
#: horizontal LR convergence: the largest coefficient change that still counts as moving.
HLR_TOL: float = 1e-3
#: values, longest vector in one horizontal secure sum (features + 1): bounds the ciphertexts a
#: coordinator or silo accepts for one round.
HLR_MAX_VECTOR_LENGTH: int = 100_000

# --- SecureBoost (vertical XGBoost with Paillier; fedsilo/protocols/secureboost/) -------------
#: fractional bits of the fixed-point gradients and hessians (2**-30 ~ 1e-9, finer than the
#: float32 gradients XGBoost itself uses). Capped per job so that sums stay exact in float64
#: (``fedsilo.ml.tree.precision_bits``); every slot of a packed ciphertext costs this many bits.
SECUREBOOST_PRECISION_BITS: int = 30
#: bits, floor of the DJN exponent x in the obfuscator hs^x. The exponent is 2x the key's strength
#: (224 for 2048-bit keys, 256 for 3072) and never below this; see fedsilo/crypto/paillier.py.
PAILLIER_DJN_EXPONENT_BITS: int = 224
#: bits per digit of the fixed-base tables: 12 keeps tables at ~45 MB per process for a 2048-bit
#: key (2^12 entries x 19 digits x 2 primes x 256 bytes); 13-14 were at most 8% faster for 2-4x
#: the memory (bench/bench_paillier.py).
PAILLIER_TABLE_WINDOW_BITS: int = 12
#: bits per digit of a passive party's fixed-base table of the label holder's published
#: re-randomisation base (mod n^2, no CRT, exponent bits(n) + 128): 8 gives ~1.5 ms per
#: re-randomised histogram ciphertext for ~37 MiB per process at 2048 bits; 10 saves 20% for
#: 3x the memory (bench/bench_paillier.py, docs/crypto.md).
PAILLIER_RERANDOMISE_WINDOW_BITS: int = 8
#: bits, statistical margin of a re-randomiser's exponent over bits(n): each re-randomised reply
#: is within 2^-128 of a fresh uniform encryption of its plaintext in the label holder's subgroup.
PAILLIER_RERANDOMISE_STAT_BITS: int = 128
#: rows per obfuscator task sent to the process pool (amortises task overhead, bounds memory).
SECUREBOOST_ENCRYPT_CHUNK_ROWS: int = 4096
#: rows per histogram task at a passive party.
SECUREBOOST_HIST_CHUNK_ROWS: int = 8192
#: a passive party sums coarse features through their joint cells while its training rows show
#: at most rows/this many distinct cells (then only where it saves multiplications at a node):
#: 45% fewer ciphertext multiplications at the root on default credit (bench/bench_secureboost).
SECUREBOOST_JOINT_ROWS_PER_CELL: int = 16
#: trees, largest n_estimators a job may ask for; bins, largest max_bin.
SECUREBOOST_MAX_TREES: int = 1000
#: bins, the largest ``max_bin`` a SecureBoost job may ask for.
SECUREBOOST_MAX_BIN: int = 1024

# --- horizontal XGBoost (fedsilo/protocols/hxgb/training.py, fedsilo/ml/grid_sketch.py) -------
#: smallest magnitude the fixed binning grid resolves; values closer to 0 share the middle bucket.
#: z-scored or monetary features never need finer.
HXGB_GRID_MIN_ABS: float = 1e-8
#: largest magnitude the binning grid resolves (amounts in any currency's minor unit); values
#: beyond share the outer buckets.
HXGB_GRID_MAX_ABS: float = 1e12
#: positive (and negative) grid boundaries: 2 * 2047 + 1 = 4095 buckets per feature, 2.3 % wide in
#: relative terms, so one feature's counts fit one 4096-slot CKKS ciphertext with a slot to spare.
HXGB_GRID_HALF: int = 2047
#: bits, floor and ceiling of the fractional bits of fixed-point gradients and hessians. Within
#: them a job uses as many as keep every histogram sum below ``CKKS_EXACT_LIMIT`` (fewer for more
#: rows: 26 bits for 24,000 rows); 30 bits is already finer than XGBoost's float32 gradients.
HXGB_GRADIENT_BITS_MIN: int = 8
#: bits, ceiling of the fractional bits of horizontal XGBoost's fixed-point gradients (see above).
HXGB_GRADIENT_BITS_MAX: int = 30
#: values, longest vector one horizontal XGBoost secure sum may carry (1024 ciphertexts: the grid
#: counts of 1023 features); bounds what a coordinator or silo accepts for one round.
HXGB_MAX_VECTOR_LENGTH: int = 1 << 22
#: bytes, ceiling for one serialised CKKS ciphertext accepted from a peer (a fresh 8192-degree
#: ciphertext is ~330 kB).
CKKS_MAX_CIPHERTEXT_BYTES: int = 1 << 20
#: bytes, ceiling for a serialised CKKS context accepted from a peer (a secret context with
#: relinearisation keys is ~2 MB).
CKKS_MAX_CONTEXT_BYTES: int = 1 << 24
#: grid steps, largest magnitude a decrypted CKKS sum of integers may have and still be rounded
#: back exactly: below it the CKKS error stays under 0.02 (measured 0.002 at 1e12, 0.25 at 1e14).
CKKS_EXACT_LIMIT: int = 2**42

# --- fairness audit (fedsilo/protocols/fairness/) ------------------------------------------------
#: bits, statistical hiding of the masks the label holder adds to every per-group sum the
#: attribute holder decrypts: a mask is uniform and this many bits wider than the largest value,
#: so the decrypted sum is within 2^-40 of uniform whatever the value (the usual statistical
#: security parameter of masked two-party protocols).
FAIRNESS_MASK_STAT_BITS: int = 40
#: bits, fixed-point resolution of the per-bin mean scores behind a group's mean score per
#: calibration band (2^-16 of the score range: far below any calibration difference reported).
FAIRNESS_SCORE_BITS: int = 16
# --- online scoring (fedsilo/silo_node/serving*.py, fedsilo/coordinator/serving.py) -----------
#: milliseconds, default deadline of one online scoring request, end to end at the label holder
#: (a card authorisation waits for the fraud score; a request may ask for less or more).
SERVING_DEADLINE_MS: int = 100
#: milliseconds, longest deadline a request may ask for: no scoring request may hang a caller.
SERVING_MAX_DEADLINE_MS: int = 10_000
#: transactions, most one HTTP/gRPC request may carry ("a small batch"; larger jobs use batch
#: scoring, which writes to the label holder's database in resumable chunks).
SERVING_MAX_REQUEST_ROWS: int = 1000
#: transactions, most one micro-batch sends to the passive silos: under load, requests waiting
#: while a batch is in flight leave together, up to this many rows.
SERVING_MAX_BATCH_ROWS: int = 2000
#: micro-batches a label holder keeps in flight at once per served model: more requests than
#: this wait and leave together in the next batch (that is the micro-batching).
SERVING_MAX_INFLIGHT: int = 4
#: milliseconds of its deadline a request keeps for combining the parts and answering: the
#: passive silos' answers are awaited until the deadline minus this.
SERVING_COMBINE_MARGIN_MS: int = 5
#: seconds, longest life of one Serve stream before the coordinator reopens it (every call has a
#: deadline, the long-lived ones too; reopening costs one index check, not a rebuild).
SERVING_STREAM_MAX_S: float = 24 * 3600.0
#: seconds, first wait before the coordinator reopens a Serve stream that failed; doubles up to
#: ``SERVING_RECONNECT_MAX_S``. A silo that comes back is used again within about that.
SERVING_RECONNECT_S: float = 0.2
#: seconds, longest wait between attempts to reopen a failed Serve stream.
SERVING_RECONNECT_MAX_S: float = 2.0
#: Serve streams a silo keeps open at once (one per served model): each holds a server thread.
SERVING_MAX_STREAMS: int = 4
#: seconds covered by one aggregated ledger entry of a passive silo's online answers (counts of
#: requests and rows per interval, so the ledger does not grow by one row per payment).
SERVING_LEDGER_INTERVAL_S: float = 60.0
#: seconds between a serving silo's re-reads of its dataset into its in-memory index (new
#: customers become scoreable within this).
SERVING_INDEX_REFRESH_S: float = 300.0
#: rows per second a passive silo answers per served model unless its policy says
#: ``serve_rate_limit`` (bursts of one second's worth are allowed).
SERVING_DEFAULT_RATE_LIMIT: int = 100
#: rows per UTC day a passive silo answers per served model unless its policy says
#: ``serve_daily_budget``.
SERVING_DEFAULT_DAILY_BUDGET: int = 1_000_000
#: bytes of a keyed pseudonym (HMAC-SHA256 truncated): 128 bits, no collision among 2**40 ids.
SERVING_PSEUDONYM_BYTES: int = 16
# --- launching silo processes (cli/launch.py: fedsilo demo) -----------------------------------
#: seconds a launched silo process may take to import, validate its data and answer its health
#: check; generous, since a loaded 2-core machine needs tens of seconds.
LAUNCH_START_TIMEOUT_S: float = 120.0
#: seconds a launched silo gets to stop after SIGTERM before it is killed.
LAUNCH_STOP_TIMEOUT_S: float = 10.0
