//! The processors hitl ships, chosen by `--processor`: the simulated one (in
//! [`crate::review::processor`]), [`command`] and [`openai`].

pub mod command;
pub mod openai;

use std::{sync::Arc, time::Duration};

use crate::{
    config::{Config, ProcessorKind},
    review::{Processor, SimulatedProcessor},
};

/// The processor the configuration asks for, or why it cannot be built (a one-line error for
/// start-up).
pub fn build(config: &Config) -> Result<Arc<dyn Processor>, String> {
    let processing = &config.processing;
    Ok(match processing.processor {
        ProcessorKind::Simulated => Arc::new(SimulatedProcessor {
            delay: Duration::from_millis(config.process_delay_ms),
        }),
        ProcessorKind::Command => Arc::new(command::CommandProcessor::new(processing)?),
        ProcessorKind::Openai => Arc::new(openai::OpenAiProcessor::new(processing)?),
    })
}
