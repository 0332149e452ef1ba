"""The one interface between the web layer and a workflow system."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, List, Optional, Protocol, Sequence, Tuple

from ..config import Config
from ..images.reference import Reference
from ..images.registry import AuthConfig
from ..images.stores.base import StoredImage
from .caller import Caller
from ..errors import NotSupported
from .models import Content, ImagePull, Output, Page, RunRecord, TaskRecord, WorkflowRegistration
from .states import State
from .submission import Submission


class BackgroundWork(Protocol):
    """Work a backend needs done beside the web workers while the server runs (a scheduler, a reconciler)."""

    name: str

    def run_forever(self) -> None:
        """Work until `stop` is called."""

    def stop(self) -> None:
        """Ask `run_forever` to return soon."""


class Backend(ABC):
    """What a workflow system must provide to be served over WES.

    Implementations keep no run only in memory: any process holding a backend
    built from the same configuration can answer for any run.
    """

    @abstractmethod
    def for_caller(self, caller: Caller) -> "Backend":
        """This backend acting for the caller a request was authenticated as (web/auth.py).

        A backend whose system has its own users (Arvados) makes every call with the
        caller's token, so that system's permissions decide; one without (the local
        backend) shows a caller only the runs it owns, and an admin all of them.
        """

    def background_work(self) -> Sequence[BackgroundWork]:
        """What `serve` runs beside the web workers for this backend (none by default)."""
        return ()

    @abstractmethod
    def engine_versions(self) -> Dict[str, List[str]]:
        """Engine name to the versions it runs, for service-info."""

    @abstractmethod
    def default_engine_parameters(self) -> List[dict]:
        """The `DefaultWorkflowEngineParameter` objects for service-info."""

    @abstractmethod
    def filesystem_protocols(self) -> List[str]:
        """URL schemes accepted for input locations."""

    @abstractmethod
    def state_counts(self) -> Dict[str, int]:
        """Number of runs in each state."""

    @abstractmethod
    def ready(self) -> None:
        """Return if the backend can take and answer requests now; raise `ServerError` saying why not.

        For readiness probes: quick (a few seconds at most), and with no caller's token.
        """

    @abstractmethod
    def submit(self, submission: Submission, credentials: Optional[Dict[str, AuthConfig]] = None) -> str:
        """Take ownership of a validated submission and queue it; return its run id.

        `credentials` (registry → AuthConfig, from ``X-Registry-Auth``) are for
        this run's images only: kept in memory, never stored.
        """

    @abstractmethod
    def list_runs(
        self,
        page_size: int,
        page_token: Optional[str],
        states: Sequence[State] = (),
        tags: Optional[Dict[str, str]] = None,
    ) -> Page:
        """Runs newest first, filtered by state and tags, as a page of `RunSummary`."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The full record of a run; `NotFound` if there is none."""

    @abstractmethod
    def get_state(self, run_id: str) -> State:
        """The current state of a run; `NotFound` if there is none."""

    @abstractmethod
    def list_tasks(self, run_id: str, page_size: int, page_token: Optional[str]) -> Page:
        """The run's tasks in start order, as a page of `TaskRecord`."""

    @abstractmethod
    def get_task(self, run_id: str, task_id: str) -> TaskRecord:
        """One task of a run; `NotFound` if there is none."""

    @abstractmethod
    def cancel(self, run_id: str) -> None:
        """Ask for a run to stop; it moves to CANCELING, then CANCELED."""

    @abstractmethod
    def log(self, run_id: str, stream: str, task_id: Optional[str] = None) -> Content:
        """A run's (or a task's) stdout or stderr; `NotFound` if there is none (yet)."""

    @abstractmethod
    def output(self, run_id: str, relpath: str) -> Output:
        """One of the run's output files, or the listing of an output directory; `NotFound` outside the outputs."""

    @abstractmethod
    def pull_image(self, image: Reference, platform: Optional[str] = None,
                   credentials: Optional[Dict[str, AuthConfig]] = None, project_uuid: Optional[str] = None) -> str:
        """Start importing `image` into the image store (policy checked at once); return the pull's id.

        `project_uuid` is where in an Arvados store the image goes; a store without projects refuses it.
        """

    def register_workflow(self, submission: Submission, name: Optional[str], description: Optional[str],
                          project_uuid: Optional[str], update_uuid: Optional[str] = None,
                          credentials: Optional[Dict[str, AuthConfig]] = None) -> str:
        """Register the submitted workflow where users launch it (Workbench); the registration's id at once.

        `update_uuid` names a registered workflow to replace, keeping its uuid. Only a
        backend whose system has registered workflows (Arvados) does this.
        """
        raise NotSupported("registering workflows is for the Arvados backend: this server runs workflows itself, "
                           "so there is nowhere to register them")

    def get_workflow_registration(self, registration_id: str) -> WorkflowRegistration:
        """A registration's state and, once COMPLETE, the workflow's uuid and Workbench URL."""
        raise NotSupported("registering workflows is for the Arvados backend: this server has no registrations")

    @abstractmethod
    def get_image_pull(self, pull_id: str) -> ImagePull:
        """An image pull's state and result; `NotFound` if there is none."""

    @abstractmethod
    def list_images(self) -> Tuple[str, List[StoredImage]]:
        """The image store's kind and the images it holds, newest first."""


def make_backend(config: Config) -> Backend:
    """Build the backend the configuration names."""
    if config.backend == "local":
        from ..local.backend import LocalBackend

        return LocalBackend(config)
    if config.backend == "arvados":
        from ..arvados.backend import ArvadosBackend

        return ArvadosBackend(config)
    raise ValueError(f"unknown backend {config.backend!r}")  # Config.validate prevents this
