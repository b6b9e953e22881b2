//! Decoder language models from GGUF (llama family incl. SmolLM2, qwen2): tokenizer from metadata,
//! chat templates, greedy and sampled decoding with stop strings and incremental output, and
//! structured output (decoding constrained to a JSON schema).

mod constraint;
mod gguf_tokenizer;
mod judge;
mod llm;
pub use llm::find_gguf;
mod prefill;
mod stream;
mod template;

pub use constraint::{ConstrainedDecoder, ConstraintError, ConstraintVocab, OutputConstraint};
pub use gguf_tokenizer::tokenizer_from_gguf;
pub use judge::{nli_label_positions, JudgePrompt, NliJudge, NLI_LABELS};
pub use llm::{
    FinishReason, GenModel, GenTiming, GenerateOptions, Generation, PrefixState, DEFAULT_SEED,
};
pub use prefill::{Prefill, PrefillPrefix};
pub use stream::StopMatcher;
pub use template::{ChatMessage, ChatTemplate};
