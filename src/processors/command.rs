//! `--processor command`: runs a program per attempt.

use crate::{
    config::ProcessorConfig,
    engine::NodeError,
    review::{ProcessRequest, Processor, processor::ProcessFuture},
};
use std::sync::Arc;

pub struct CommandProcessor {}

impl CommandProcessor {
    pub fn new(_config: &ProcessorConfig) -> Result<Self, String> {
        Err("--processor command is not built yet".into())
    }
}

impl Processor for CommandProcessor {
    fn process<'a>(
        &'a self,
        _request: &'a ProcessRequest,
        _progress: &'a (dyn Fn(Arc<str>) + Send + Sync),
    ) -> ProcessFuture<'a> {
        Box::pin(async move { Err(NodeError::fatal("not built yet")) })
    }
}
