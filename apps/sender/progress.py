"""Live progress on the terminal: a bar per image in flight and one for the whole run."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from apps.transport import Progress as ImageProgress

# Bars shown at once; images beyond these wait hidden until a bar frees up.
MAX_ROWS = 8


class _Either(ProgressColumn):
    """A bytes column for an image's bar, something else for the overall bar (which counts images)."""

    def __init__(self, per_image: ProgressColumn, overall: Callable[[Task], str]) -> None:
        super().__init__()
        self._per_image = per_image
        self._overall = overall

    def render(self, task: Task) -> RenderableType:
        if task.fields.get("overall"):
            return Text(self._overall(task), style="progress.download")
        return self._per_image.render(task)


def _count(task: Task) -> str:
    return f"{int(task.completed)}/{int(task.total) if task.total is not None else '?'} images"


class ProgressView:
    """A ProgressCallback that draws rich progress bars (on stderr, normally)."""

    def __init__(self, console: Console, total_images: int | None) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            _Either(DownloadColumn(), _count),
            _Either(TransferSpeedColumn(), lambda task: ""),
            TimeRemainingColumn(),
            console=console,
            transient=True,  # the summary table replaces the bars at the end
        )
        self._overall = self._progress.add_task("all images", total=total_images, overall=True)
        self._images: dict[int, TaskID] = {}
        self._finished: set[int] = set()

    def __enter__(self) -> ProgressView:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.stop()

    def __call__(self, report: ImageProgress) -> None:
        if report.index in self._finished:
            return
        task = self._images.get(report.index)
        if task is None:
            visible = sum(1 for t in self._progress.tasks if t.visible) - 1 < MAX_ROWS
            task = self._progress.add_task(_label(report.name), total=report.total_bytes, visible=visible)
            self._images[report.index] = task
        self._progress.update(task, completed=report.done_bytes, total=report.total_bytes)
        if report.total_bytes and report.done_bytes >= report.total_bytes:
            self._finish(report.index)

    def _finish(self, index: int) -> None:
        self._finished.add(index)
        self._progress.remove_task(self._images.pop(index))
        self._progress.advance(self._overall)
        hidden = next((t for t in self._progress.tasks if not t.visible), None)
        if hidden is not None:
            self._progress.update(hidden.id, visible=True)


def _label(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
