"""A LangGraph agent whose drafts go through hitl until a person approves one.

The graph has two nodes: `draft` writes (or revises) the text, `review` hands it to hitl (the
first draft with `review`, later ones with `review_revision`) and waits for the reviewer. When
the reviewer requests changes, the graph goes back to `draft` with the comment; when the task
ends (approved, or rejected for good), the graph ends.

The "model" here is a deterministic stand-in (it appends "addressed: <comment>"), so the example
runs anywhere, CI included; put your LLM call in `write`.

    HITL_URL=http://127.0.0.1:3000 python langgraph_agent.py "a note about the release"
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional, TypedDict

from langgraph.graph import END, START, StateGraph

from hitl_client import Client


class State(TypedDict, total=False):
    topic: str
    draft: str
    comment: Optional[str]  # the reviewer's request for changes, to address next
    task_id: Optional[str]
    attempt: int  # the attempt the next draft is handed in as
    status: str
    outcome: Optional[str]
    final_result: Optional[str]
    drafts: int


def write(topic: str, draft: Optional[str], comment: Optional[str]) -> str:
    """The stand-in for a model: a first draft, or the last one with the comment addressed."""
    if draft is None:
        return f"A short note about {topic}."
    return f"{draft}\naddressed: {comment}"


def build(hitl: Client, timeout: Optional[float] = None):  # type: ignore[no-untyped-def]
    def draft_node(state: State) -> State:
        text = write(state["topic"], state.get("draft"), state.get("comment"))
        return {"draft": text, "drafts": state.get("drafts", 0) + 1}

    def review_node(state: State) -> State:
        if state.get("task_id") is None:
            result = hitl.review(
                state["draft"], input=state["topic"], metadata={"agent": "langgraph"}, timeout=timeout
            )
        else:
            result = hitl.review_revision(
                state["task_id"], state["attempt"], state["draft"], timeout=timeout
            )
        return {
            "task_id": result.task_id,
            "attempt": result.attempt,
            "status": result.status,
            "outcome": result.outcome,
            "final_result": result.final_result,
            "comment": result.comment if result.revision_requested else None,
        }

    def after_review(state: State) -> str:
        return "draft" if state.get("comment") else END

    graph = StateGraph(State)
    graph.add_node("draft", draft_node)
    graph.add_node("review", review_node)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "review")
    graph.add_conditional_edges("review", after_review, ["draft", END])
    return graph.compile()


def main() -> int:
    topic = " ".join(sys.argv[1:]) or "the release"
    url = os.environ.get("HITL_URL", "http://127.0.0.1:3000")
    timeout = float(os.environ["REVIEW_TIMEOUT"]) if os.environ.get("REVIEW_TIMEOUT") else None
    with Client(url, token=os.environ.get("HITL_TOKEN")) as hitl:
        final = build(hitl, timeout).invoke({"topic": topic}, {"recursion_limit": 50})
    print(json.dumps({k: final.get(k) for k in ("task_id", "outcome", "drafts", "final_result")}))
    return 0 if final.get("outcome") == "approved" else 1


if __name__ == "__main__":
    sys.exit(main())
