"""Every action of the TUI, declared once: its binding ID, default keys, words and where it
applies. Screens take their ``BINDINGS`` from here, the help screen and the command palette
list them, and the config file's ``[keymap]`` table remaps them by ID
(``"runs.delete" = "x"``)."""

from __future__ import annotations

from textual.binding import Binding

from trainui.core.record import Record


class Action(Record):
    """``id``: the binding ID (``group.name``); ``keys``: Textual key names, comma-separated;
    ``action``: the method called (``action_<name>``); ``description``: the footer's word;
    ``help``: what it does, for the help screen and the command palette; ``show``: shown in
    the footer; ``changes``: changes a run (hidden with ``--readonly``); ``priority``: works
    even where a text field has the focus; ``display``: the footer's key, when not the first."""

    __slots__ = (
        "id", "keys", "action", "description", "help", "show", "changes", "priority", "display",
    )  # fmt: skip


# Where each group applies, in the words of the help screen.
GROUPS = {
    "app": "Everywhere",
    "runs": "Run list",
    "list": "Run list: moving",
    "experiments": "Experiments",
    "experiment": "Experiment screen",
    "run": "Run and its log",
    "log": "Log: moving",
    "metrics": "Metrics: the charts (a run's, or runs compared)",
    "compare": "Comparing the marked runs",
    "editor": "Manifest editor",
    "manifest": "Manifest editor: in the text",
    "viewer": "A run's manifest (read-only)",
    "results": "Downloading results",
    "gpus": "GPUs, full screen",
    "bar": "Search, filter and jump line",
    "confirm": "Confirmation",
}

# Each action: its ID, keys, method (``action_<name>``), the footer's word (``_`` for a space) and
# flags (h: hidden from the footer, c: changes a run, p: priority, -: none); on the next line, what
# it does, for the help screen and the command palette.
_TABLE = """
app.quit             q                      quit             Quit      h
    Quit trainui (runs go on)
app.help             question_mark,f1       help             Keys      -
    This list of keys
app.palette          ctrl+p                 command_palette  Commands  h
    Every action, by name
app.gpus             ctrl+g                 app.toggle_gpus  GPUs      h
    The GPUs (or the CPU slots and the queue) full screen, and back
runs.open            enter                  open_run         Open      -
    Open the selected run: fields and log
runs.new             n                      new_run          New       c
    Write a manifest and submit a run
runs.clone           c                      clone_run        Clone     c
    New run from the selected run's manifest
runs.halt            h                      halt_run         Halt      c
    Halt the selected run, or the marked ones (asks first)
runs.resume          R                      resume_run       Resume    c
    Start the selected halted or failed run again, from its last checkpoint
runs.delete          d                      delete_run       Delete    c
    Delete the selected run, or the marked ones (asks first)
runs.mark            space                  toggle_mark      Mark      hc
    Mark or unmark the selected run (h and d act on the marked runs)
runs.mark_all        asterisk               mark_all         Mark_all  hc
    Mark every run shown (again: unmark them)
runs.filter          slash                  filter           Filter    -
    Show the runs with these words
runs.unmark          escape                 clear_marks      Unmark    hc
    Unmark every run
runs.clear_filter    escape                 clear_filter     Clear     -
    With no run marked: clear the filter, show every run again
runs.sort            s                      sort             Sort      -
    Sort by submitted, state, name, duration, then each metric column (its last value)
runs.reverse         r                      reverse          Reverse   h
    Reverse the order
runs.jump            colon                  jump             Jump      h
    Jump to a run by ID or name
runs.download        x                      app.download_results Download h
    Download the selected run's results into a folder
runs.manifest        m                      app.view_manifest Manifest h
    The selected run's manifest (read-only, secrets removed)
runs.compare         C                      compare          Compare   -
    Compare the marked runs (or the selected one): curves overlaid, final values, manifests
runs.columns         M                      pick_columns     Columns   h
    Pick the metrics the list shows as columns (their last values); remembered
runs.experiments     e                      app.toggle_experiments Experiments -
    The experiments (sweeps: many runs from one manifest) instead of the runs
experiments.runs     e                      app.toggle_experiments Runs -
    The runs instead of the experiments
experiments.open     enter                  open_experiment  Open      -
    Open the selected experiment: its runs ranked by the objective, the best ones' curves
experiments.halt     h                      halt_experiment  Halt      c
    Halt the selected experiment: each of its runs that goes on or waits (asks first)
experiments.resume   R                      resume_experiment Resume   c
    Start the selected experiment's halted or failed runs again, from their checkpoints (asks first)
experiments.delete   d                      delete_experiment Delete   c
    Delete the selected experiment and its runs (asks first; stored results stay)
experiments.sort     s                      sort             Sort      -
    Sort by submitted, state, name, then the best objective value
experiments.reverse  r                      reverse          Reverse   h
    Reverse the order
experiment.back      escape                 back             Back      -
    Back to the experiments
experiment.open      enter                  open_run         Open      -
    Open the selected run: fields and log
experiment.halt      h                      halt_experiment  Halt      c
    Halt the experiment: each of its runs that goes on or waits (asks first)
experiment.resume    R                      resume_experiment Resume   c
    Start the experiment's halted or failed runs again, from their checkpoints (asks first)
experiment.delete    d                      delete_experiment Delete   c
    Delete the experiment and its runs (asks first; stored results stay)
experiment.sort      s                      sort             Sort      -
    Sort by rank (the objective), state, each parameter, then run time
experiment.reverse   r                      reverse          Reverse   h
    Reverse the order
experiment.curves    v                      toggle_curves    Curves    -
    Show or hide the curves of the objective (the five best runs overlaid)
experiment.pick      p                      pick_metrics     Pick      h
    Pick the metrics the curves show (the objective's first)
experiment.compare   C                      compare          Compare   -
    Compare the five best runs: every metric's curves, their final values, manifests
list.down            j,down                 cursor_down      Down      h
    Next run
list.up              k,up                   cursor_up        Up        h
    Previous run
list.top             g,home                 cursor_top       First     h
    First run
list.bottom          G,end                  cursor_bottom    Last      h
    Last run
list.page_down       pagedown,ctrl+f        page_down        Page_down h
    A page down
list.page_up         pageup,ctrl+b          page_up          Page_up   h
    A page up
run.back             escape                 back             Back      -
    Back to where the run was opened from (the run list, or its experiment)
run.follow           f                      follow           Follow    -
    Follow the log as it grows (on/off)
run.metrics          v                      toggle_metrics   Metrics   -
    Switch between the log and the metrics (a chart per metric, live)
run.search           slash                  search           Search    -
    Search the whole log
run.only             ampersand              only_matching    Only      h
    Show only the lines that match (like less's &; escape shows all)
run.next_match       n                      next_match       Next      h
    Next match
run.previous_match   N                      previous_match   Previous  h
    Previous match
run.details          i                      toggle_details   Details   -
    Show or hide the run's fields
run.fields           tab                    focus_fields     Fields    h
    Move to the run's fields and back (the arrow keys scroll them where they do not all fit)
run.halt             h                      halt_run         Halt      c
    Halt this run (asks first)
run.resume           R                      resume_run       Resume    c
    Start this halted or failed run again, as its next attempt, from its last checkpoint
run.delete           d                      delete_run       Delete    c
    Delete this run (asks first)
run.clone            c                      clone_run        Clone     hc
    New run from this run's manifest
run.download         x                      app.download_results Download -
    Download this run's results into a folder
run.manifest         m                      app.view_manifest Manifest -
    This run's manifest (read-only, secrets removed)
log.end              G,end                  scroll_end       End       -
    The end of the log, following it
log.top              g,home                 scroll_top       Top       h
    The first line of the log
log.down             j,down                 line_down        Down      h
    A line down
log.up               k,up                   line_up          Up        h
    A line up
log.page_down        pagedown,space,ctrl+f  page_down        Page_down h
    A page down
log.page_up          pageup,b,ctrl+b        page_up          Page_up   h
    A page up
log.left             left                   scroll_left      Left      h
    The start of long lines
log.right            right                  scroll_right     Right     h
    The rest of long lines
log.wrap             w                      toggle_wrap      Wrap      -
    Wrap long lines (on/off)
metrics.log          l                      toggle_log       Log_scale -
    A log scale on the charts' values (on/off)
metrics.smooth       s                      smooth           Smooth    -
    Smooth the curves as TensorBoard does: off, 0.6, 0.9, 0.99 (again: the next)
metrics.pick         p                      pick_metrics     Pick      -
    Pick the metrics shown (a chart each)
metrics.zoom         z,enter                zoom             Zoom      h
    The selected chart alone, as tall as the screen (again: every chart)
metrics.uncursor     escape                 clear_cursor     No_cursor -
    The cursor away (the legends say the last values again)
metrics.unzoom       escape                 unzoom           All_charts -
    Every chart again, after a chart was zoomed
metrics.right        right                  cursor(1)        Values    -
    A cursor on the selected chart, a column right: its legend says each line's value there
metrics.left         left                   cursor(-1)       Left      h
    The cursor a column left
metrics.right_far    shift+right            cursor(10)       Right     h
    The cursor ten columns right
metrics.left_far     shift+left             cursor(-10)      Left      h
    The cursor ten columns left
metrics.next         j,down                 next_chart       Next      h
    Next chart
metrics.previous     k,up                   previous_chart   Previous  h
    Previous chart
metrics.first        g,home                 first_chart      First     h
    First chart
metrics.last         G,end                  last_chart       Last      h
    Last chart
compare.back         escape                 back             Back      -
    Back to the run list
compare.curves       1                      show_tab('curves') Curves  -
    The curves, overlaid per metric (a line per run)
compare.values       2                      show_tab('values') Values  -
    The final values: a row per run, a column per metric
compare.manifest     3                      show_tab('manifest') Manifests -
    The manifest fields that differ between the runs
editor.submit        ctrl+s                 submit           Submit    cp
    Submit the run
editor.browse        ctrl+o                 browse           Model     p
    Pick the model definition
editor.external      ctrl+g                 external_editor  $EDITOR   p
    Edit the manifest in $EDITOR (was ctrl+e, which is now end of line)
editor.template      ctrl+t                 template         Template  p
    Start from a template
editor.find          ctrl+f                 find             Find      p
    Find in the manifest (enter or F3: next, ctrl+r: previous, esc: close)
editor.find_next     f3                     find_next        Next      hp
    Next match of the find
editor.find_prev     ctrl+r,shift+f3        find_previous    Previous  hp
    Previous match of the find (shift+F3 too, in terminals that send it)
editor.next_problem  f8                     next_problem     Problem   hp
    Go to the next problem (the status line says it when there is one)
editor.close         escape                 close            Close     -
    Close the editor (asks if changed)
manifest.leave       escape                 leave_text       Leave_text p
    Leave the text for the problems and the model field (esc there closes the editor)
manifest.top         ctrl+home              document_start   Top       hp
    The start of the manifest
manifest.end         ctrl+end               document_end     Bottom    hp
    The end of the manifest
manifest.select_top  ctrl+shift+home        document_start(True) Select  hp
    Select to the start of the manifest
manifest.select_end  ctrl+shift+end         document_end(True) Select  hp
    Select to the end of the manifest
manifest.select_all  ctrl+a                 select_all       Select_all hp
    Select the whole manifest (home: start of the line)
manifest.complete    ctrl+space,ctrl+@      complete         Complete  hp
    Complete the framework's name or version from the service's catalogue (again: the next)
viewer.back          escape                 back             Back      -
    Back to where it was opened from
viewer.clone         c                      clone_run        Clone     c
    New run from this manifest
viewer.wrap          w                      toggle_wrap      Wrap      -
    Wrap long lines (on/off)
results.cancel       escape                 cancel           Cancel    -
    Close; stop a download under way (the files already written stay)
gpus.back            escape                 back             Back      -
    Back to where it was opened from
bar.regex            ctrl+r                 toggle_regex     Regex     -
    In the search line: a regular expression, or plain text (on/off)
confirm.yes          y                      confirm          Yes       h
    Yes
confirm.no           escape,n               cancel           Cancel    h
    No
"""
_DISPLAY = {"log.end": "G"}  # the footer says G rather than the first key


def _actions() -> dict[str, Action]:
    actions = {}
    lines = _TABLE.strip().splitlines()
    for head, help in zip(lines[::2], lines[1::2], strict=True):
        id, keys, action, word, flags = head.split()
        word = word.replace("_", " ")  # Page_down: two words in the footer
        actions[id] = Action(
            id, keys, action, word, help.strip(), "h" not in flags, "c" in flags, "p" in flags,
            _DISPLAY.get(id),
        )  # fmt: skip
    return actions


ACTIONS: dict[str, Action] = _actions()
CHANGING = frozenset(a.action for a in ACTIONS.values() if a.changes)


def bindings(group: str) -> list[Binding]:
    """The ``BINDINGS`` of a screen or widget: the actions of ``group``."""
    return [
        Binding(
            a.keys,
            a.action,
            a.description,
            show=a.show,
            id=a.id,
            priority=a.priority,
            tooltip=a.help,
            key_display=a.display,
        )
        for a in ACTIONS.values()
        if a.id.split(".")[0] == group
    ]


def group_of(action: Action) -> str:
    return action.id.split(".")[0]
