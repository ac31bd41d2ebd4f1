//! `--processor openai`: an OpenAI-compatible chat-completions server, streamed.

use crate::{
    config::ProcessorConfig,
    engine::NodeError,
    review::{ProcessRequest, Processor, processor::ProcessFuture},
};
use std::sync::Arc;

pub struct OpenAiProcessor {}

impl OpenAiProcessor {
    pub fn new(_config: &ProcessorConfig) -> Result<Self, String> {
        Err("--processor openai is not built yet".into())
    }
}

impl Processor for OpenAiProcessor {
    fn process<'a>(
        &'a self,
        _request: &'a ProcessRequest,
        _progress: &'a (dyn Fn(Arc<str>) + Send + Sync),
    ) -> ProcessFuture<'a> {
        Box::pin(async move { Err(NodeError::fatal("not built yet")) })
    }
}
