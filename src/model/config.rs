use std::path::Path;

use serde::Deserialize;

use super::error::{io_err, ModelError, Result};

/// The keys of a Pythia / GPT-NeoX `config.json` that determine the network.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NeoxConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    #[serde(alias = "partial_rotary_factor")]
    pub rotary_pct: f64,
    #[serde(default = "default_rotary_base", alias = "rope_theta")]
    pub rotary_emb_base: f64,
    pub layer_norm_eps: f64,
    #[serde(default = "default_true")]
    pub use_parallel_residual: bool,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: String,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_rotary_base() -> f64 {
    10_000.0
}

fn default_true() -> bool {
    true
}

/// Activation functions GPT-NeoX checkpoints use, by their transformers names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact (erf) GELU: transformers' "gelu", Pythia's choice.
    GeluErf,
    /// Tanh approximation: "gelu_new", "gelu_fast", "gelu_pytorch_tanh".
    GeluTanh,
    Relu,
    Silu,
}

impl Activation {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::GeluErf),
            "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            "silu" | "swish" => Some(Self::Silu),
            _ => None,
        }
    }
}

impl NeoxConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::from_json(&text, path)
    }

    /// Parses and validates; `path` only names the source in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let bad = |message: String| ModelError::Config {
            path: path.to_path_buf(),
            message,
        };
        let mut raw: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        check_architecture(&raw, path)?;
        lift_rope_parameters(&mut raw);
        let config: NeoxConfig = serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
        config.validate().map_err(bad)?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !(0.0..=1.0).contains(&self.rotary_pct) {
            return Err(format!("rotary_pct {} is outside [0, 1]", self.rotary_pct));
        }
        if !self.rotary_dims().is_multiple_of(2) {
            return Err(format!(
                "rotary dimensions {} (head size {} x rotary_pct {}) must be even",
                self.rotary_dims(),
                self.head_dim(),
                self.rotary_pct
            ));
        }
        if Activation::from_name(&self.hidden_act).is_none() {
            return Err(format!(
                "hidden_act {:?} is not supported; expected gelu, gelu_new, gelu_fast, gelu_pytorch_tanh, relu or silu",
                self.hidden_act
            ));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Number of leading head dimensions that get rotary embeddings (as transformers truncates).
    pub fn rotary_dims(&self) -> usize {
        (self.head_dim() as f64 * self.rotary_pct) as usize
    }

    pub fn activation(&self) -> Activation {
        Activation::from_name(&self.hidden_act).expect("validated in from_json")
    }
}

/// transformers 5 nests the rotary settings under `rope_parameters`; Pythia's hub files keep
/// them at the top level. Top-level keys win.
fn lift_rope_parameters(raw: &mut serde_json::Value) {
    let Some(rope) = raw.get("rope_parameters").cloned() else {
        return;
    };
    let Some(map) = raw.as_object_mut() else {
        return;
    };
    for (nested, top) in [
        ("partial_rotary_factor", "rotary_pct"),
        ("rope_theta", "rotary_emb_base"),
    ] {
        if let Some(value) = rope.get(nested) {
            if !map.contains_key(top) && !map.contains_key(nested) {
                map.insert(top.to_string(), value.clone());
            }
        }
    }
}

fn check_architecture(raw: &serde_json::Value, path: &Path) -> Result<()> {
    let model_type = raw.get("model_type").and_then(|v| v.as_str());
    let architectures: Vec<&str> = raw
        .get("architectures")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    let is_neox = model_type == Some("gpt_neox") || architectures.contains(&"GPTNeoXForCausalLM");
    if is_neox {
        return Ok(());
    }
    let found = model_type
        .map(str::to_string)
        .or_else(|| architectures.first().map(|s| s.to_string()))
        .unwrap_or_else(|| "<none>".to_string());
    Err(ModelError::UnknownArchitecture {
        path: path.to_path_buf(),
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTHIA_70M: &str = r#"{
      "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0,
      "hidden_act": "gelu", "hidden_size": 512, "intermediate_size": 2048,
      "layer_norm_eps": 1e-05, "max_position_embeddings": 2048, "model_type": "gpt_neox",
      "num_attention_heads": 8, "num_hidden_layers": 6, "rotary_emb_base": 10000,
      "rotary_pct": 0.25, "tie_word_embeddings": false, "torch_dtype": "float16",
      "use_cache": true, "use_parallel_residual": true, "vocab_size": 50304 }"#;

    #[test]
    fn reads_pythia_config() {
        let c = NeoxConfig::from_json(PYTHIA_70M, Path::new("config.json")).unwrap();
        assert_eq!(c.head_dim(), 64);
        assert_eq!(c.rotary_dims(), 16);
        assert_eq!(c.activation(), Activation::GeluErf);
        assert_eq!(c.eos_token_id, Some(0));
        assert!(c.use_parallel_residual);
    }

    #[test]
    fn rejects_other_architectures_by_name() {
        let text = PYTHIA_70M
            .replace("gpt_neox", "llama")
            .replace("GPTNeoX", "Llama");
        let err = NeoxConfig::from_json(&text, Path::new("m/config.json")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("m/config.json") && msg.contains("llama"),
            "{msg}"
        );
    }

    #[test]
    fn missing_key_names_file_and_key() {
        let text = PYTHIA_70M.replace("\"rotary_pct\": 0.25,", "");
        let msg = NeoxConfig::from_json(&text, Path::new("x/config.json"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("x/config.json") && msg.contains("rotary_pct"),
            "{msg}"
        );
    }

    #[test]
    fn reads_transformers5_nested_rope_parameters() {
        let text = PYTHIA_70M
            .replace("\"rotary_emb_base\": 10000,", "")
            .replace(
                "\"rotary_pct\": 0.25,",
                "\"rope_parameters\": {\"partial_rotary_factor\": 0.5, \"rope_theta\": 500.0},",
            );
        let c = NeoxConfig::from_json(&text, Path::new("config.json")).unwrap();
        assert_eq!((c.rotary_pct, c.rotary_emb_base), (0.5, 500.0));
    }

    #[test]
    fn rejects_unknown_activation() {
        let text = PYTHIA_70M.replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"mish\"");
        let msg = NeoxConfig::from_json(&text, Path::new("config.json"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("mish"), "{msg}");
    }
}
