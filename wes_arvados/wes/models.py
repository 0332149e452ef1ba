"""Plain records that backends return and the web layer shapes into WES JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Union

from .states import State

# Output locations that start with this are relative to the run's output root;
# the web layer turns them into download URLs. Anything else is left as it is.
OUTPUT_ROOT = "./"


@dataclass
class RunRequest:
    """What the client asked for, as echoed in RunLog.request."""

    workflow_params: Dict[str, Any]
    workflow_type: str
    workflow_type_version: str
    workflow_url: str
    tags: Dict[str, str] = field(default_factory=dict)
    workflow_engine_parameters: Dict[str, Optional[str]] = field(default_factory=dict)
    workflow_engine: Optional[str] = None
    workflow_engine_version: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """The WES `RunRequest` object (engine fields only when the client sent them)."""
        result = {
            "workflow_params": self.workflow_params,
            "workflow_type": self.workflow_type,
            "workflow_type_version": self.workflow_type_version,
            "tags": self.tags,
            "workflow_engine_parameters": self.workflow_engine_parameters,
            "workflow_url": self.workflow_url,
        }
        if self.workflow_engine is not None:
            result["workflow_engine"] = self.workflow_engine
        if self.workflow_engine_version is not None:
            result["workflow_engine_version"] = self.workflow_engine_version
        return result


@dataclass
class RunSummary:
    """One row of ListRuns."""

    run_id: str
    state: State
    start_time: Optional[str]
    end_time: Optional[str]
    tags: Dict[str, str]

    def to_dict(self) -> Dict[str, Any]:
        """The WES `RunSummary` object."""
        return {
            "run_id": self.run_id,
            "state": self.state.value,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "tags": self.tags,
        }


@dataclass
class Page:
    """A page of a listing and the opaque token of the next one ("" at the end)."""

    items: List[Any]
    next_page_token: str


@dataclass
class TaskRecord:
    """One CWL job of a run; stdout/stderr are backend log names, not URLs."""

    id: str
    name: str
    cmd: List[str]
    start_time: Optional[str]
    end_time: Optional[str]
    exit_code: Optional[int]
    system_logs: List[str] = field(default_factory=list)


@dataclass
class RunRecord:
    """Everything known about a run; the web layer turns log and output references into URLs."""

    run_id: str
    state: State
    request: RunRequest
    submitted_time: str
    start_time: Optional[str] = None
    end_time: Optional[str] = None
    exit_code: Optional[int] = None
    cmd: List[str] = field(default_factory=list)
    system_logs: List[str] = field(default_factory=list)
    # CWL output object; File/Directory locations starting with OUTPUT_ROOT are
    # relative to the run's output root, which the web layer maps to download URLs.
    outputs: Dict[str, Any] = field(default_factory=dict)
    has_logs: bool = False


@dataclass(frozen=True)
class Content:
    """A log or output file as a backend serves it: a stream opened on demand, its size and media type.

    A backend whose files live elsewhere (Arvados' keep-web) gives `redirect`, a URL
    the client is sent to, instead of `open`.
    """

    open: Optional[Callable[[], BinaryIO]]
    size: Optional[int]
    media_type: str = "application/octet-stream"
    modified: Optional[float] = None
    redirect: Optional[str] = None


@dataclass(frozen=True)
class Entry:
    """One entry of an output directory."""

    name: str
    is_dir: bool
    size: Optional[int] = None


@dataclass(frozen=True)
class Listing:
    """An output directory: its name and entries, sorted by name."""

    name: str
    entries: List[Entry]


Output = Union[Content, Listing]


@dataclass
class ImagePull:
    """One pull asked for over the API."""

    id: str
    image: str
    platform: Optional[str]
    state: str
    submitted_time: str
    end_time: Optional[str] = None
    image_id: Optional[str] = None
    manifest_digest: Optional[str] = None
    size: Optional[int] = None
    downloaded: Optional[int] = None
    cached: Optional[bool] = None  # True: the store had it, nothing was downloaded
    store: Optional[str] = None
    error: Optional[str] = None
    # In Keep: the image's collection, and its portable data hash, what a workflow pins the image by.
    location: Optional[str] = None
    portable_data_hash: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        """As the API returns it (unset fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class WorkflowRegistration:
    """One registration of a workflow in Arvados (``POST /workflows``, ``PUT /workflows/{uuid}``)."""

    id: str
    name: str
    state: str  # QUEUED, RUNNING, COMPLETE or SYSTEM_ERROR
    submitted_time: str
    end_time: Optional[str] = None
    project_uuid: Optional[str] = None
    update_uuid: Optional[str] = None  # the workflow an update replaces
    workflow_uuid: Optional[str] = None
    workbench_url: Optional[str] = None
    images: Dict[str, str] = field(default_factory=dict)  # image name → the portable data hash it is pinned by
    error: Optional[str] = None
    system_logs: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        """As the API returns it (unset fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}
