use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Act {
    Next,
    Left,
    Right,
    Again,
    Stop,
}

impl Action for Act {
    fn label(&self) -> &'static str {
        match self {
            Act::Next => "next",
            Act::Left => "left",
            Act::Right => "right",
            Act::Again => "again",
            Act::Stop => "stop",
        }
    }
}

#[derive(Default)]
struct Store {
    trail: Vec<&'static str>,
    choice: Option<Act>,
    counter: u32,
}

/// Records its name and returns a fixed action (or the store's choice).
struct Mark(&'static str, Option<Act>);

impl Node<Store> for Mark {
    type Prep = ();
    type Output = ();
    type Action = Act;
    async fn prep(&self, _: &Store) -> Result<(), NodeError> {
        Ok(())
    }
    async fn exec(&self, _: &()) -> Result<(), NodeError> {
        Ok(())
    }
    async fn post(&self, store: &mut Store, _: (), _: ()) -> Result<Act, NodeError> {
        store.trail.push(self.0);
        Ok(self.1.or(store.choice).unwrap_or(Act::Stop))
    }
}

/// Fails `failures` times, then succeeds; counts tries; falls back to "fallback" if allowed.
struct Flaky {
    failures: u32,
    retries: u32,
    tries: AtomicU32,
    fallback: bool,
}

impl Node<Store> for Flaky {
    type Prep = ();
    type Output = &'static str;
    type Action = Act;
    fn max_retries(&self) -> u32 {
        self.retries
    }
    fn retry_wait(&self, _next: u32) -> Duration {
        Duration::from_secs(5)
    }
    async fn prep(&self, _: &Store) -> Result<(), NodeError> {
        Ok(())
    }
    async fn exec(&self, _: &()) -> Result<&'static str, NodeError> {
        let n = self.tries.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= self.failures {
            Err(NodeError::new(format!("try {n} failed")))
        } else {
            Ok("worked")
        }
    }
    async fn exec_fallback(&self, _: &(), error: NodeError) -> Result<&'static str, NodeError> {
        if self.fallback {
            Ok("fallback")
        } else {
            Err(error)
        }
    }
    async fn post(&self, store: &mut Store, _: (), out: &'static str) -> Result<Act, NodeError> {
        store.trail.push(out);
        Ok(Act::Stop)
    }
}

fn flaky(failures: u32, retries: u32, fallback: bool) -> Flaky {
    Flaky {
        failures,
        retries,
        tries: AtomicU32::new(0),
        fallback,
    }
}

#[tokio::test]
async fn routes_by_the_action_post_returns() {
    let flow = Flow::builder()
        .node("start", Mark("start", None))
        .node("left", Mark("left", Some(Act::Stop)))
        .node("right", Mark("right", Some(Act::Stop)))
        .edge("start", Act::Left, "left")
        .edge("start", Act::Right, "right")
        .build()
        .unwrap();
    for (choice, expected) in [(Act::Left, "left"), (Act::Right, "right")] {
        let mut store = Store {
            choice: Some(choice),
            ..Store::default()
        };
        assert_eq!(flow.run(&mut store).await, Ok(Act::Stop));
        assert_eq!(store.trail, vec!["start", expected]);
    }
}

#[tokio::test]
async fn an_action_without_successor_ends_the_flow() {
    let flow = Flow::builder()
        .node("only", Mark("only", Some(Act::Next)))
        .build()
        .unwrap();
    let mut store = Store::default();
    assert_eq!(flow.run(&mut store).await, Ok(Act::Next));
    assert_eq!(store.trail, vec!["only"]);
}

#[tokio::test(start_paused = true)]
async fn exec_is_retried_with_a_wait_between_tries() {
    let node = flaky(2, 3, false);
    let started = tokio::time::Instant::now();
    let mut store = Store::default();
    assert_eq!(node.run(&mut store).await, Ok(Act::Stop));
    assert_eq!(node.tries.load(Ordering::SeqCst), 3);
    assert_eq!(store.trail, vec!["worked"]);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(10),
        "two waits of 5 s"
    );
}

#[tokio::test(start_paused = true)]
async fn after_the_last_try_the_fallback_decides() {
    let mut store = Store::default();
    let node = flaky(5, 2, true);
    assert_eq!(node.run(&mut store).await, Ok(Act::Stop));
    assert_eq!(node.tries.load(Ordering::SeqCst), 2);
    assert_eq!(store.trail, vec!["fallback"]);

    let flow = Flow::builder()
        .node("flaky", flaky(5, 2, false))
        .build()
        .unwrap();
    let err = flow.run(&mut Store::default()).await.unwrap_err();
    assert_eq!(err.node, "flaky");
    assert_eq!(err.source, NodeError::new("try 2 failed"));
}

#[test]
fn links_are_checked_when_the_flow_is_built() {
    let unknown_target = Flow::<Store, Act>::builder()
        .node("a", Mark("a", None))
        .edge("a", Act::Next, "nowhere")
        .build();
    assert!(matches!(
        unknown_target,
        Err(BuildError::UnknownNode {
            missing: "nowhere",
            ..
        })
    ));

    let unknown_source = Flow::<Store, Act>::builder()
        .node("a", Mark("a", None))
        .edge("ghost", Act::Next, "a")
        .build();
    assert!(matches!(
        unknown_source,
        Err(BuildError::UnknownNode {
            missing: "ghost",
            ..
        })
    ));

    let twice = Flow::<Store, Act>::builder()
        .node("a", Mark("a", None))
        .node("b", Mark("b", None))
        .edge("a", Act::Next, "b")
        .edge("a", Act::Next, "a")
        .build();
    assert!(matches!(twice, Err(BuildError::DuplicateEdge { .. })));

    let duplicate = Flow::<Store, Act>::builder()
        .node("a", Mark("a", None))
        .node("a", Mark("a", None))
        .build();
    assert!(matches!(duplicate, Err(BuildError::DuplicateNode("a"))));

    let bad_start = Flow::<Store, Act>::builder()
        .node("a", Mark("a", None))
        .start("b")
        .build();
    assert!(matches!(bad_start, Err(BuildError::UnknownStart("b"))));
    assert!(matches!(
        Flow::<Store, Act>::builder().build(),
        Err(BuildError::NoStart)
    ));
}

/// Loops back until the counter reaches three, like a review that asks for changes twice.
struct Count;

impl Node<Store> for Count {
    type Prep = u32;
    type Output = u32;
    type Action = Act;
    async fn prep(&self, store: &Store) -> Result<u32, NodeError> {
        Ok(store.counter)
    }
    async fn exec(&self, n: &u32) -> Result<u32, NodeError> {
        Ok(n + 1)
    }
    async fn post(&self, store: &mut Store, _: u32, n: u32) -> Result<Act, NodeError> {
        store.counter = n;
        Ok(if n < 3 { Act::Again } else { Act::Next })
    }
}

#[tokio::test]
async fn a_loop_runs_until_its_node_chooses_to_leave() {
    let flow = Flow::builder()
        .node("work", Mark("work", Some(Act::Next)))
        .node("check", Count)
        .node("done", Mark("done", Some(Act::Stop)))
        .edge("work", Act::Next, "check")
        .edge("check", Act::Again, "work")
        .edge("check", Act::Next, "done")
        .build()
        .unwrap();
    let mut store = Store::default();
    assert_eq!(flow.run(&mut store).await, Ok(Act::Stop));
    assert_eq!(store.counter, 3);
    assert_eq!(store.trail, vec!["work", "work", "work", "done"]);

    // Driven one step at a time, the same flow visits the same nodes.
    let mut store = Store::default();
    let mut node = Some(flow.start());
    let mut visited = Vec::new();
    while let Some(current) = node {
        visited.push(flow.node_name(current));
        node = flow.step(current, &mut store).await.unwrap().1;
    }
    assert_eq!(visited.len(), 7);
    assert_eq!(visited.last(), Some(&"done"));
}

#[test]
fn describes_itself_as_mermaid() {
    let flow = Flow::<Store, Act>::builder()
        .node("a", Mark("a", None))
        .node("b", Mark("b", None))
        .edge("a", Act::Left, "b")
        .edge("b", Act::Again, "a")
        .build()
        .unwrap();
    assert_eq!(
        flow.to_mermaid(),
        "flowchart TD\n    a[a]\n    b[b]\n    a -->|left| b\n    b -->|again| a\n"
    );
}
