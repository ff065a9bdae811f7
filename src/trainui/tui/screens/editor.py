"""The manifest editor: YAML with validation as you type, the problems to jump to, a find bar,
the model definition to send with it, and ctrl+s to submit."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import tempfile

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option
from textual.widgets.text_area import Selection

from trainui.client import ClientError, ServiceUnreachable
from trainui.core.runs import is_run_id
from trainui.tui.keymap import bindings
from trainui.tui.screens.base import TrainuiScreen
from trainui.tui.screens.confirm import ConfirmScreen
from trainui.tui.screens.pickers import DefinitionPicker, TemplatePicker, start_folder
from trainui.tui.templates import templates
from trainui.tui.widgets.bar_input import BarInput
from trainui.tui.widgets.bars import ConnectionBanner, TitleBar
from trainui.tui.widgets.footer import Footer
from trainui.tui.widgets.manifest_area import ManifestArea
from trainui.tui.widgets.path_input import PathInput

VALIDATE_AFTER = 0.3  # seconds of quiet typing before the manifest is checked again
REDACTED = "********"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Problem:
    """One problem, as the list shows it; from the validator or from the service."""

    def __init__(self, line: int, column: int, path: str, message: str, severity: str) -> None:
        self.line, self.column, self.path = line, column, path
        self.message, self.severity = message, severity

    def text(self) -> str:
        mark = "✗" if self.severity == "error" else "!"
        where = f"{self.line}:{self.column}"
        path = f" {self.path}:" if self.path else ""
        return f"{mark} {where}{path} {self.message}"


def check(text: str, environ, frameworks: list[dict] | None = None) -> list[Problem]:
    """Every problem of the manifest text (pure and quick: runs in a worker thread);
    ``frameworks``: the service's catalogue (None: it has none), which the framework must be in."""
    from trainui.core.manifest import parse_manifest

    report = parse_manifest(text, "manifest.yml", env=environ)
    problems = [Problem(p.line, p.column, p.path, p.message, p.severity) for p in report.problems]
    manifest = report.manifest
    if frameworks is not None and manifest is not None:
        from trainui.frameworks import manifest_problem

        found = manifest_problem(manifest, frameworks)
        if found is not None:
            why, line, column = found
            problems.append(
                Problem(line, column, "model_definition.framework", f"C104 {why}", "error")
            )
    for number, line in enumerate(text.splitlines(), 1):
        column = line.find(REDACTED)
        if column >= 0:
            problems.append(
                Problem(
                    number, column + 1, "", "a secret the service removed: write it again, "
                    "or ${NAME} to take it from your environment", "error",
                )
            )  # fmt: skip
    problems.sort(key=lambda p: (p.line, p.column))
    return problems


class FindBar(BarInput):
    """The editor's find line: escape closes it, and the footer says so."""

    BINDINGS = [Binding("escape", "cancel", "Close find")]


class EditorScreen(TrainuiScreen):
    BINDINGS = bindings("editor")
    PALETTE = (("editor", None), ("manifest", "ManifestArea"))
    DEFAULT_CSS = """
    EditorScreen ManifestArea { height: 1fr; border: none; }
    EditorScreen #problems { height: auto; max-height: 6; border: none; background: $panel; }
    EditorScreen #problems.-empty { display: none; }
    EditorScreen #definition-row { height: 1; background: $boost; }
    EditorScreen #definition-row Label { width: auto; padding: 0 1; color: $text-muted; }
    EditorScreen PathInput { height: 1; border: none; padding: 0; background: $boost; width: 1fr; }
    EditorScreen #editor-status { height: 1; padding: 0 1; background: $panel; }
    EditorScreen #find-row { height: 1; display: none; background: $boost; }
    EditorScreen #find-row.-shown { display: block; }
    EditorScreen #find-row Label { width: auto; padding: 0 1; color: $text-muted; }
    EditorScreen #find { width: 1fr; padding: 0; }
    EditorScreen #find-count { width: auto; padding: 0 1; }
    """

    def __init__(self, text: str, title: str = "new run", definition: str = "") -> None:
        super().__init__()
        self.initial_text = text
        self.title_text = title
        self.initial_definition = definition
        self.problems: list[Problem] = []
        self.frameworks: list[dict] | None = None  # the service's catalogue (None: none)
        self._completed: tuple[int, str] = (-1, "")  # (text generation, the choices)
        self._opened = text  # the text as the area holds it, once mounted (``modified``)
        self._submitted = False
        self.submitting = False
        self._generation = 0
        self._timer = None
        self.find_query = ""
        self._find_from = (0, 0)  # where typing in the find bar looks from

    def compose(self) -> ComposeResult:
        yield TitleBar(self.title_text, "ctrl+s submits", id="title")
        yield ConnectionBanner()
        yield ManifestArea(self.initial_text, id="manifest")
        yield OptionList(id="problems", classes="-empty")
        with Horizontal(id="definition-row"):
            yield Label("Model definition")
            yield PathInput(
                self.initial_definition,
                placeholder="a folder or .zip of your training code (ctrl+o: browse)",
                id="definition",
            )
        yield Static("checking…", id="editor-status")
        with Horizontal(id="find-row"):
            yield Label("Find")
            yield FindBar(id="find")
            yield Static("", id="find-count")
            yield Label("⏎/F3 next ^r previous", id="find-keys")
        yield Footer(compact=True)

    @property
    def area(self) -> ManifestArea:
        return self.query_one(ManifestArea)

    @property
    def definition(self) -> PathInput:
        return self.query_one("#definition", PathInput)

    @property
    def modified(self) -> bool:
        """The text differs from what the editor opened with (edits undone are no change),
        and was not submitted."""
        return not self._submitted and self.area.text != self._opened

    def on_mount(self) -> None:
        self._opened = self.area.text
        self.area.focus()
        self._validate(self.area.text, self._generation)
        self._load_frameworks()

    @work(group="frameworks", exit_on_error=False)
    async def _load_frameworks(self) -> None:
        """The service's frameworks catalogue: the framework is checked and completed from it."""
        try:
            answer = await self.app.client.frameworks()
        except Exception:  # an older service, or none: the manifest is checked alone
            return
        if answer.get("catalogue") is not None:
            self.frameworks = answer.get("frameworks") or []
            self._validate(self.area.text, self._generation)

    def complete_framework(self) -> None:
        """The framework's name or version under the cursor completed from the catalogue
        (again: the next one)."""
        from trainui.tui.framework_complete import complete

        area = self.area
        if self.frameworks is None:
            self.notify("No frameworks catalogue: every framework runs on the host.")
            return
        done = complete(area.text, area.cursor_location, self.frameworks)
        if done is None:
            self.notify("Completes framework.name and framework.version: put the cursor there.")
            return
        if done.text is None:
            self.notify(f"No {done.field} to complete from the catalogue.", severity="warning")
            return
        # the choices, said by the status line once the completed text is checked
        self._completed = (self._generation + 1, f"{done.field}: {', '.join(done.choices)}")
        area.replace(done.text, (done.line, done.start), (done.line, done.end))
        area.move_cursor((done.line, done.start + len(done.text)))

    # --- validation as you type ------------------------------------------------------------

    @on(TextArea.Changed, "#manifest")
    def _changed(self) -> None:
        self._generation += 1
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(VALIDATE_AFTER, self._validate_now)

    def _validate_now(self) -> None:
        self._validate(self.area.text, self._generation)

    @work(thread=True, group="validate", exclusive=True)
    def _validate(self, text: str, generation: int) -> None:
        problems = check(text, os.environ, self.frameworks)
        self.app.call_from_thread(self._show_problems, problems, generation)

    def _show_problems(self, problems: list[Problem], generation: int | None = None) -> None:
        if generation is not None and generation != self._generation:
            return  # the text changed since: a newer check is on its way
        self.problems = problems
        listing = self.query_one("#problems", OptionList)
        listing.clear_options()
        listing.add_options(Option(p.text(), id=str(i)) for i, p in enumerate(problems))
        listing.set_class(not problems, "-empty")
        lines: dict[int, str] = {}
        for p in problems:
            if lines.get(p.line - 1) != "error":
                lines[p.line - 1] = p.severity
        self.area.set_problems(lines)
        errors = sum(p.severity == "error" for p in problems)
        warnings = len(problems) - errors
        status = self.query_one("#editor-status", Static)
        if errors:
            message = (
                f"[$error]✗ not valid[/]: {_plural(errors, 'error')}, "
                f"{_plural(warnings, 'warning')} (f8: next problem)"
            )
        elif warnings:
            message = f"[$success]✓ valid[/], {_plural(warnings, 'warning')}"
        else:
            message = "[$success]✓ valid[/]"
        if self._completed[0] == self._generation:
            message += f" · {self._completed[1]}"
        elif self.frameworks is not None:  # said where it is needed: the footer has no room
            message += " · ctrl+space: framework"
        status.update(message)

    @on(OptionList.OptionSelected, "#problems")
    def _jump_to_problem(self, event: OptionList.OptionSelected) -> None:
        self._go_to(self.problems[int(event.option.id)])

    def _go_to(self, problem: Problem) -> None:
        area = self.area
        line = max(0, min(problem.line - 1, area.document.line_count - 1))
        column = max(0, min(problem.column - 1, len(area.document.get_line(line))))
        area.move_cursor((line, column), center=True)
        area.focus()

    def action_next_problem(self) -> None:
        if not self.problems:
            self.notify("No problems.")
            return
        row = self.area.cursor_location[0] + 1
        after = [p for p in self.problems if p.line > row]
        problem = after[0] if after else self.problems[0]
        self._go_to(problem)
        self.query_one("#problems", OptionList).highlighted = self.problems.index(problem)

    # --- find -----------------------------------------------------------------------------

    @property
    def find_bar(self) -> FindBar:
        return self.query_one("#find", FindBar)

    def action_find(self) -> None:
        """Open the find bar, with the selected text (one line of it) or the last query."""
        area = self.area
        selected = area.selected_text
        query = selected if selected and "\n" not in selected else self.find_query
        self._find_from = min(area.selection)
        self.query_one("#find-row").add_class("-shown")
        self.find_bar.open("find", "words to find in the manifest", query)
        if query:
            self._find(query, "here")

    @on(Input.Changed, "#find")
    def _find_typed(self, event: Input.Changed) -> None:
        self.find_query = event.value
        self._find(event.value, "here")

    @on(Input.Submitted, "#find")
    def _find_entered(self, event: Input.Submitted) -> None:
        self._find(event.value, "next")

    @on(BarInput.Cancelled, "#find")
    def _find_closed(self) -> None:
        self.query_one("#find-row").remove_class("-shown")
        self.find_bar.close()
        self.area.focus()  # the match stays selected

    def action_find_next(self) -> None:
        self._find_again("next")

    def action_find_previous(self) -> None:
        self._find_again("previous")

    def _find_again(self, direction: str) -> None:
        if not self.find_query:
            self.action_find()
            return
        self._find(self.find_query, direction)

    def _find(self, query: str, direction: str) -> None:
        """Select the match of ``query`` at the cursor (``here``, as one types), after it
        (``next``) or before it (``previous``), wrapping around; the bar says which of how
        many, and when it wrapped."""
        count = self.query_one("#find-count", Static)
        area = self.area
        if not query:
            count.update("")
            return
        document = area.document
        # smart case: a capital letter in the query makes it case-sensitive
        flags = 0 if query != query.lower() else re.IGNORECASE
        matches = [(m.start(), m.end()) for m in re.finditer(re.escape(query), area.text, flags)]
        starts = [start for start, _end in matches]
        if not starts:
            count.update("[$error]no match[/]")
            return
        selection = area.selection
        if direction == "here":
            origin = document.get_index_from_location(self._find_from)
        else:
            origin = document.get_index_from_location(min(selection))
        if direction == "previous":
            before = [i for i, start in enumerate(starts) if start < origin]
            wrapped = not before
            index = before[-1] if before else len(starts) - 1
        else:
            # the next match: from the cursor, or after the match (the text) now selected
            past = direction == "next" and not selection.is_empty
            after = [i for i, start in enumerate(starts) if start > origin or (start == origin
                     and not past)]  # fmt: skip
            wrapped = not after
            index = after[0] if after else 0
        start, end = matches[index]
        area.selection = Selection(
            document.get_location_from_index(start), document.get_location_from_index(end)
        )
        area.scroll_cursor_visible(center=True)
        if direction != "here":
            self._find_from = area.selection.start
        note = " (wrapped)" if wrapped and direction != "here" else ""
        count.update(f"{index + 1} of {len(starts)}{note}")

    # --- model definition, templates, $EDITOR ---------------------------------------------

    def action_browse(self) -> None:
        def picked(path: str | None) -> None:
            if path:
                self.definition.value = path
                self.definition.cursor_position = len(path)

        self.app.push_screen(DefinitionPicker(start_folder(self.definition.value)), picked)

    def action_template(self) -> None:
        def picked(template) -> None:
            if template is None:
                return
            area = self.area
            area.replace(template.text, (0, 0), area.document.end)
            area.move_cursor((0, 0))
            if template.definition:
                self.definition.value = template.definition
            area.focus()

        self.app.push_screen(TemplatePicker(templates()), picked)

    def action_external_editor(self) -> None:
        """Edit the manifest in $VISUAL / $EDITOR; what it saves comes back here."""
        from textual.app import SuspendNotSupported

        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        with tempfile.TemporaryDirectory(prefix="trainui-") as tmp:
            path = os.path.join(tmp, "manifest.yml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.area.text)
            command = [*shlex.split(editor), path]
            try:
                with self.app.suspend():
                    code = subprocess.call(command)
            except SuspendNotSupported:  # no terminal to give (tests): run it all the same
                code = subprocess.call(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            except OSError as error:
                self.notify(f"cannot start {editor}: {error.strerror}", severity="error")
                return
            with open(path, encoding="utf-8") as f:
                text = f.read()
        if code != 0:
            self.notify(f"{editor} exited with code {code}; the text is as it saved it.")
        area = self.area
        if text != area.text:
            area.replace(text, (0, 0), area.document.end)
        area.focus()

    # --- submitting -----------------------------------------------------------------------

    def action_submit(self) -> None:
        if self.submitting:
            return
        problems = check(self.area.text, os.environ)
        self._generation += 1
        self._show_problems(problems)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            self.notify(
                f"The manifest has {_plural(len(errors), 'error')}: fix them first.",
                severity="error",
            )
            self._go_to(errors[0])
            return
        definition = self.definition.value.strip()
        if not definition:
            self.notify("Which model definition? Give a folder or a .zip.", severity="error")
            self.definition.focus()
            return
        self.submitting = True
        self.query_one("#editor-status", Static).update("submitting…")
        self._submit(self.area.text, definition)

    @work(group="submit", exclusive=True)
    async def _submit(self, text: str, definition: str) -> None:
        from trainui.core.definition import (
            DefinitionError,
            skipped_warning,
            zip_directory,
            zipped_name,
        )

        client = self.app.client
        names = set(_ENV_REF.findall(text))
        environment = {n: os.environ[n] for n in names if n in os.environ}
        try:
            with tempfile.TemporaryDirectory(prefix="trainui-") as tmp:
                zip_path = os.path.join(tmp, "model.zip")
                stored = definition.startswith("run:")  # a run's stored model definition
                source = definition[4:] if stored else definition
                path = os.path.expanduser(source)
                # run:ID is never a folder of that name here (`x` downloads a run's results
                # into ./ID); a bare ID is, when there is one
                if is_run_id(source) and (stored or not os.path.exists(path)):
                    await client.download_definition(source, zip_path)
                elif os.path.isdir(path):
                    zip_path = os.path.join(tmp, zipped_name(path))
                    info = await asyncio.to_thread(zip_directory, path, zip_path)
                    warning = skipped_warning(info, source)
                    if warning:
                        self.notify(warning.removeprefix("warning: "), severity="warning")
                elif os.path.isfile(path):
                    zip_path = path
                else:
                    raise DefinitionError(f"{definition}: no such file or folder")
                answer = await client.submit(zip_path, text.encode(), environment)
        except DefinitionError as error:
            self._failed(str(error))
            self.definition.focus()
            return
        except ServiceUnreachable as error:
            self.app.connection_lost(str(error))
            self._failed(str(error))
            return
        except ClientError as error:
            located = [e for e in error.errors if e.get("line")]
            if located:
                self._show_problems(
                    [
                        Problem(e["line"], e.get("column") or 1, e.get("path") or "",
                                e.get("message") or "", "error")
                        for e in located
                    ]
                )  # fmt: skip
            self._failed(str(error))
            return
        finally:
            self.submitting = False
        self._submitted = True
        if "experiment_id" in answer:  # a manifest with experiment: (SPEC §9)
            self.app.submitted_experiment(
                answer["experiment_id"], len(answer.get("model_ids") or ()), self
            )
        else:
            self.app.submitted(answer["model_id"], self)

    def _failed(self, message: str) -> None:
        self.notify(f"Not submitted: {message}", severity="error", timeout=8)
        self.query_one("#editor-status", Static).update(f"[$error]not submitted[/]: {message}")

    def action_close(self) -> None:
        if not self.modified:
            self.app.back()
            return

        def answered(close: bool | None) -> None:
            if close:
                self.app.back()

        self.app.push_screen(
            ConfirmScreen(
                "Close the editor?", "The manifest was changed and not submitted.", "Close"
            ),
            answered,
        )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
