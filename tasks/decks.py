"""Flyte Decks: each task's own tabs, and where a local run wrote them.

flytekit's local execution hands every task the same list of decks (``ExecutionParameters.Builder``
copies the list, not its items, from the enclosing context), so a task's ``deck.html`` also showed
every tab an earlier task had added: the evaluation Deck carried the validation task's "Data
contracts". ``own_deck()`` at the top of a task drops those leftovers. On a cluster each task runs
in its own process and the call changes nothing.

A local run writes each Deck to ``<sandbox>/local_flytekit/<random>/deck.html`` after the task
returns (and logs that at INFO only); ``deck_files()`` finds the ones this process wrote by their
tab names. On a cluster the Flyte console shows them on each task ("Flyte Deck").
"""

from __future__ import annotations

import os
import re
from pathlib import Path

TAB = re.compile(r'<li onclick="handleLinkClick\(this\)">([^<]*)</li>')


def own_deck(timeline: bool = True) -> None:
    """Forget the tabs earlier tasks of this local execution left in the shared list of decks;
    call first thing in a task that adds a Deck. ``timeline``: keep flytekit's "Timeline" tab
    (for a task whose ``deck_fields`` include it), emptied of the earlier tasks' timings."""
    from flytekit import FlyteContextManager, current_context
    from flytekit.deck.deck import TimeLineDeck

    state = FlyteContextManager.current_context().execution_state
    if state is None or not state.is_local_execution():
        return  # a task of its own process: nothing left over
    decks = current_context().decks
    kept = []
    for deck in decks:
        if timeline and isinstance(deck, TimeLineDeck) and deck not in kept:
            deck.time_info.clear()
            kept.append(deck)
    decks[:] = kept


def deck_files(tabs: dict[str, str]) -> dict[str, Path | None]:
    """``{label: tab name}`` -> ``{label: newest deck.html of this process showing that tab}``
    (None where no such file: the task was served from Flyte's cache, or runs on a cluster)."""
    from flytekit import FlyteContextManager

    sandbox = Path(FlyteContextManager.current_context().file_access.local_sandbox_dir)
    found: dict[str, tuple[float, Path]] = {}
    wanted = {tab: label for label, tab in tabs.items()}
    for path in sandbox.glob("*/deck.html"):
        try:
            names = set(TAB.findall(path.read_text(encoding="utf-8", errors="replace")))
            mtime = os.stat(path).st_mtime
        except OSError:
            continue
        for tab in names & set(wanted):
            label = wanted[tab]
            if label not in found or mtime > found[label][0]:
                found[label] = (mtime, path)
    return {label: found[label][1] if label in found else None for label in tabs}
