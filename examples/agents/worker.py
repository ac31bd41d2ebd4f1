"""A worker for hitl: claims attempts of outside tasks and answers them.

It upper-cases the task's input and, from the second attempt on, addresses every comment the
reviewers made (they come in `history`). Put your model call in `answer`.

    HITL_URL=http://127.0.0.1:3000 python worker.py      # Ctrl-C stops it
"""

import os

from hitl_client import Client, HistoryEntry, Task


def answer(task: Task, attempt: int, history: list[HistoryEntry]) -> str:
    text = task.input.upper()
    for earlier in history:
        if earlier.comment:
            text += f"\naddressed: {earlier.comment}"
    return text


def main() -> None:
    url = os.environ.get("HITL_URL", "http://127.0.0.1:3000")
    max_tasks = int(os.environ["MAX_TASKS"]) if os.environ.get("MAX_TASKS") else None
    with Client(url, token=os.environ.get("HITL_TOKEN")) as hitl:
        handled = hitl.run_worker(answer, max_tasks=max_tasks, handle_signals=True)
    print(f"answered {handled} attempts")


if __name__ == "__main__":
    main()
