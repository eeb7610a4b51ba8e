from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Frame(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: StepHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[StepHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class StepHeader(_message.Message):
    __slots__ = ("job_id", "method", "seq", "total_bytes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    method: str
    seq: int
    total_bytes: int
    def __init__(self, job_id: _Optional[str] = ..., method: _Optional[str] = ..., seq: _Optional[int] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("name", "rows", "id_column", "features", "label")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ID_COLUMN_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    rows: int
    id_column: str
    features: _containers.RepeatedScalarFieldContainer[str]
    label: str
    def __init__(self, name: _Optional[str] = ..., rows: _Optional[int] = ..., id_column: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., label: _Optional[str] = ...) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("party", "api_version", "software_version", "datasets", "policy_json")
    PARTY_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    POLICY_JSON_FIELD_NUMBER: _ClassVar[int]
    party: str
    api_version: str
    software_version: str
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetInfo]
    policy_json: str
    def __init__(self, party: _Optional[str] = ..., api_version: _Optional[str] = ..., software_version: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[DatasetInfo, _Mapping]]] = ..., policy_json: _Optional[str] = ...) -> None: ...

class OpenJobRequest(_message.Message):
    __slots__ = ("job_id", "spec_json", "resume")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    spec_json: str
    resume: bool
    def __init__(self, job_id: _Optional[str] = ..., spec_json: _Optional[str] = ..., resume: _Optional[bool] = ...) -> None: ...

class OpenJobResponse(_message.Message):
    __slots__ = ("session_public_key", "accepted_json", "session_key_signature", "certificate_pem")
    SESSION_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_JSON_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    session_public_key: bytes
    accepted_json: str
    session_key_signature: bytes
    certificate_pem: str
    def __init__(self, session_public_key: _Optional[bytes] = ..., accepted_json: _Optional[str] = ..., session_key_signature: _Optional[bytes] = ..., certificate_pem: _Optional[str] = ...) -> None: ...

class SessionKeyProof(_message.Message):
    __slots__ = ("signature", "certificate_pem")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    certificate_pem: str
    def __init__(self, signature: _Optional[bytes] = ..., certificate_pem: _Optional[str] = ...) -> None: ...

class SetPeersRequest(_message.Message):
    __slots__ = ("job_id", "session_public_keys", "session_key_proofs")
    class SessionPublicKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    class SessionKeyProofsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SessionKeyProof
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SessionKeyProof, _Mapping]] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_PUBLIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_PROOFS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    session_public_keys: _containers.ScalarMap[str, bytes]
    session_key_proofs: _containers.MessageMap[str, SessionKeyProof]
    def __init__(self, job_id: _Optional[str] = ..., session_public_keys: _Optional[_Mapping[str, bytes]] = ..., session_key_proofs: _Optional[_Mapping[str, SessionKeyProof]] = ...) -> None: ...

class SetPeersResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CloseJobRequest(_message.Message):
    __slots__ = ("job_id", "failed", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    failed: bool
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., failed: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class CloseJobResponse(_message.Message):
    __slots__ = ("ledger_head",)
    LEDGER_HEAD_FIELD_NUMBER: _ClassVar[int]
    ledger_head: SignedLedgerHead
    def __init__(self, ledger_head: _Optional[_Union[SignedLedgerHead, _Mapping]] = ...) -> None: ...

class SignedLedgerHead(_message.Message):
    __slots__ = ("statement", "signature", "certificate_pem")
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    statement: bytes
    signature: bytes
    certificate_pem: str
    def __init__(self, statement: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., certificate_pem: _Optional[str] = ...) -> None: ...

class KeepLedgerHeadsRequest(_message.Message):
    __slots__ = ("job_id", "heads")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    HEADS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    heads: _containers.RepeatedCompositeFieldContainer[SignedLedgerHead]
    def __init__(self, job_id: _Optional[str] = ..., heads: _Optional[_Iterable[_Union[SignedLedgerHead, _Mapping]]] = ...) -> None: ...

class KeepLedgerHeadsResponse(_message.Message):
    __slots__ = ("kept",)
    KEPT_FIELD_NUMBER: _ClassVar[int]
    kept: int
    def __init__(self, kept: _Optional[int] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("spec_toml", "resume", "job_id")
    SPEC_TOML_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    spec_toml: str
    resume: bool
    job_id: str
    def __init__(self, spec_toml: _Optional[str] = ..., resume: _Optional[bool] = ..., job_id: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("job_id", "name", "state", "reason", "result_json", "created_at", "updated_at", "exit_code")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    state: str
    reason: str
    result_json: str
    created_at: str
    updated_at: str
    exit_code: int
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., result_json: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., exit_code: _Optional[int] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_seq")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_seq: int
    def __init__(self, job_id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("seq", "at", "message")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: str
    message: str
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class JobUpdate(_message.Message):
    __slots__ = ("event", "progress_json", "status")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    event: JobEvent
    progress_json: str
    status: JobStatus
    def __init__(self, event: _Optional[_Union[JobEvent, _Mapping]] = ..., progress_json: _Optional[str] = ..., status: _Optional[_Union[JobStatus, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStatus, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelRecord(_message.Message):
    __slots__ = ("model_id", "record_json")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    record_json: str
    def __init__(self, model_id: _Optional[str] = ..., record_json: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelRecord]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelRecord, _Mapping]]] = ...) -> None: ...

class ServeFrame(_message.Message):
    __slots__ = ("open", "ready", "query", "answer", "status")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    open: ServeOpen
    ready: ServeReady
    query: ServeEnvelope
    answer: ServeEnvelope
    status: ServeStatus
    def __init__(self, open: _Optional[_Union[ServeOpen, _Mapping]] = ..., ready: _Optional[_Union[ServeReady, _Mapping]] = ..., query: _Optional[_Union[ServeEnvelope, _Mapping]] = ..., answer: _Optional[_Union[ServeEnvelope, _Mapping]] = ..., status: _Optional[_Union[ServeStatus, _Mapping]] = ...) -> None: ...

class ServeOpen(_message.Message):
    __slots__ = ("serving_id",)
    SERVING_ID_FIELD_NUMBER: _ClassVar[int]
    serving_id: str
    def __init__(self, serving_id: _Optional[str] = ...) -> None: ...

class ServeReady(_message.Message):
    __slots__ = ("party", "role")
    PARTY_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    party: str
    role: str
    def __init__(self, party: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class ServeEnvelope(_message.Message):
    __slots__ = ("query_id", "sender", "recipient", "sealed", "rows", "error", "code")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    query_id: int
    sender: str
    recipient: str
    sealed: bytes
    rows: int
    error: str
    code: str
    def __init__(self, query_id: _Optional[int] = ..., sender: _Optional[str] = ..., recipient: _Optional[str] = ..., sealed: _Optional[bytes] = ..., rows: _Optional[int] = ..., error: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class ServeStatus(_message.Message):
    __slots__ = ("party", "up", "reason")
    PARTY_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    party: str
    up: bool
    reason: str
    def __init__(self, party: _Optional[str] = ..., up: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ScoreTransaction(_message.Message):
    __slots__ = ("id", "features")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    id: str
    features: _containers.ScalarMap[str, float]
    def __init__(self, id: _Optional[str] = ..., features: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("model", "transactions", "deadline_ms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    transactions: _containers.RepeatedCompositeFieldContainer[ScoreTransaction]
    deadline_ms: int
    def __init__(self, model: _Optional[str] = ..., transactions: _Optional[_Iterable[_Union[ScoreTransaction, _Mapping]]] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class ScoreResult(_message.Message):
    __slots__ = ("id", "score", "contributed", "missing")
    class MissingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    contributed: _containers.RepeatedScalarFieldContainer[str]
    missing: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., contributed: _Optional[_Iterable[str]] = ..., missing: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("model", "results", "degraded")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    model: str
    results: _containers.RepeatedCompositeFieldContainer[ScoreResult]
    degraded: bool
    def __init__(self, model: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ScoreResult, _Mapping]]] = ..., degraded: _Optional[bool] = ...) -> None: ...
