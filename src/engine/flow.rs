//! Flows: nodes linked by action, validated when built.

use std::{collections::HashMap, fmt::Write as _, future::Future, pin::Pin};

use super::{Action, Node, NodeError};

/// A node's name and its type-erased runner.
type NamedNode<S, A> = (&'static str, Box<dyn DynNode<S, A>>);

type StepFuture<'a, A> = Pin<Box<dyn Future<Output = Result<A, NodeError>> + Send + 'a>>;

/// A node with its types erased, so one flow can hold different nodes.
trait DynNode<S, A>: Send + Sync {
    fn run<'a>(&'a self, store: &'a mut S) -> StepFuture<'a, A>;
}

impl<S, N> DynNode<S, N::Action> for N
where
    S: Send + Sync,
    N: Node<S>,
{
    fn run<'a>(&'a self, store: &'a mut S) -> StepFuture<'a, N::Action> {
        Box::pin(Node::run(self, store))
    }
}

/// A flow that failed to build: a link names a node that is not in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("node {0:?} is added twice")]
    DuplicateNode(&'static str),
    #[error("the edge {from:?} --{action}--> {to:?} names unknown node {missing:?}")]
    UnknownNode {
        from: &'static str,
        action: &'static str,
        to: &'static str,
        missing: &'static str,
    },
    #[error("node {from:?} has two successors for action {action:?}")]
    DuplicateEdge {
        from: &'static str,
        action: &'static str,
    },
    #[error("the start node {0:?} is not in the flow")]
    UnknownStart(&'static str),
    #[error("the flow has no start node")]
    NoStart,
}

/// A run that stopped because a node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{node} failed: {source}")]
pub struct FlowError {
    pub node: &'static str,
    #[source]
    pub source: NodeError,
}

/// Collects nodes and edges; [`FlowBuilder::build`] checks them.
pub struct FlowBuilder<S, A> {
    nodes: Vec<NamedNode<S, A>>,
    edges: Vec<(&'static str, A, &'static str)>,
    start: Option<&'static str>,
}

impl<S: Send + Sync, A: Action> Default for FlowBuilder<S, A> {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            edges: Vec::new(),
            start: None,
        }
    }
}

impl<S: Send + Sync, A: Action> FlowBuilder<S, A> {
    /// Adds a node under a name; the first node added is the start unless [`Self::start`] says.
    pub fn node(mut self, name: &'static str, node: impl Node<S, Action = A>) -> Self {
        self.start.get_or_insert(name);
        self.nodes.push((name, Box::new(node)));
        self
    }

    /// After `from` returns `action`, run `to`.
    pub fn edge(mut self, from: &'static str, action: A, to: &'static str) -> Self {
        self.edges.push((from, action, to));
        self
    }

    pub fn start(mut self, name: &'static str) -> Self {
        self.start = Some(name);
        self
    }

    pub fn build(self) -> Result<Flow<S, A>, BuildError> {
        let mut index = HashMap::new();
        for (i, (name, _)) in self.nodes.iter().enumerate() {
            if index.insert(*name, i).is_some() {
                return Err(BuildError::DuplicateNode(name));
            }
        }
        let mut successors = HashMap::new();
        for &(from, action, to) in &self.edges {
            let unknown = |missing| BuildError::UnknownNode {
                from,
                action: action.label(),
                to,
                missing,
            };
            let from_index = *index.get(from).ok_or_else(|| unknown(from))?;
            let to_index = *index.get(to).ok_or_else(|| unknown(to))?;
            if successors.insert((from_index, action), to_index).is_some() {
                return Err(BuildError::DuplicateEdge {
                    from,
                    action: action.label(),
                });
            }
        }
        let start = self.start.ok_or(BuildError::NoStart)?;
        let start = *index.get(start).ok_or(BuildError::UnknownStart(start))?;
        Ok(Flow {
            nodes: self.nodes,
            edges: self.edges,
            successors,
            start,
        })
    }
}

/// Nodes linked by action, ready to run over any number of stores.
pub struct Flow<S, A> {
    nodes: Vec<NamedNode<S, A>>,
    /// As given, for the diagram.
    edges: Vec<(&'static str, A, &'static str)>,
    successors: HashMap<(usize, A), usize>,
    start: usize,
}

impl<S: Send + Sync, A: Action> Flow<S, A> {
    pub fn builder() -> FlowBuilder<S, A> {
        FlowBuilder::default()
    }

    /// The index of the start node, for driving the flow one [`Self::step`] at a time.
    pub fn start(&self) -> usize {
        self.start
    }

    pub fn node_name(&self, node: usize) -> &'static str {
        self.nodes[node].0
    }

    /// Runs one node; returns the action it chose and the node that runs next, if any.
    pub async fn step(&self, node: usize, store: &mut S) -> Result<(A, Option<usize>), FlowError> {
        let (name, runner) = &self.nodes[node];
        let action = runner
            .run(store)
            .await
            .map_err(|source| FlowError { node: name, source })?;
        tracing::debug!(node = name, action = action.label(), "step done");
        Ok((action, self.successors.get(&(node, action)).copied()))
    }

    /// The index of the node with this name.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|(n, _)| *n == name)
    }

    /// Runs from the start node until a node's action has no successor; returns that action.
    pub async fn run(&self, store: &mut S) -> Result<A, FlowError> {
        self.run_from(self.start, store).await
    }

    /// Runs from `node` (to resume a run that stopped there) until a node's action has no
    /// successor.
    pub async fn run_from(&self, mut node: usize, store: &mut S) -> Result<A, FlowError> {
        loop {
            match self.step(node, store).await? {
                (_, Some(next)) => node = next,
                (action, None) => return Ok(action),
            }
        }
    }

    /// The flow as a Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for (name, _) in &self.nodes {
            let _ = writeln!(out, "    {name}[{name}]");
        }
        for (from, action, to) in &self.edges {
            let _ = writeln!(out, "    {from} -->|{}| {to}", action.label());
        }
        out
    }
}
