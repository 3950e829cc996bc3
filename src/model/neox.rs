//! GPT-NeoX (Pythia) causal language model on candle, forward over a tree-shaped block.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::Embedding;

use super::linear::Linear;
use super::norm::Norm;

use super::attention;
use super::cache::{BlockLayout, KvCache};
use super::config::NeoxConfig;
use super::error::{ModelError, Result};
use super::heads::{split_rotate, HeadShape};
use super::kernels::with_cpu_f32;
use super::weights::WeightFiles;

/// Pythia names its output head `embed_out`; checkpoints re-saved by newer transformers use `lm_head`.
const HEAD_NAMES: [&str; 2] = ["embed_out.weight", "lm_head.weight"];

pub struct GptNeox {
    config: NeoxConfig,
    embed_in: Embedding,
    layers: Vec<Layer>,
    final_norm: Norm,
    head: Linear,
    rotary: Rotary,
    device: Device,
    dtype: DType,
    /// Bytes of every tensor the model holds (parameters and rotary tables).
    weight_bytes: usize,
    /// Bytes every pass must read whatever its tokens: all parameters but the input embedding
    /// (of which a pass reads one row per token) and the rotary tables (likewise).
    streamed_bytes: usize,
}

struct Layer {
    input_norm: Norm,
    post_attention_norm: Norm,
    qkv: Linear,
    attention_out: Linear,
    mlp_in: Linear,
    mlp_out: Linear,
}

/// cos/sin tables for every position, `[max_positions, rotary_dims / 2]`, as transformers builds them.
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

/// What one layer needs to know about the block being run.
struct BlockInputs<'a> {
    layout: &'a BlockLayout,
    cos: Tensor,
    sin: Tensor,
    /// On CPU in f32, the block's rotary tables as plain rows, `[t, rotary_dims / 2]` each,
    /// for the fused split and the attention kernel, which reads `layout.mask` directly.
    cpu_rotary: Option<(Vec<f32>, Vec<f32>)>,
    /// The mask as a tensor, for candle's attention ops.
    mask: Option<Tensor>,
}

impl GptNeox {
    pub fn load(
        config: NeoxConfig,
        weights: &WeightFiles,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (h, v, i) = (
            config.hidden_size,
            config.vocab_size,
            config.intermediate_size,
        );
        let loaded_bytes = std::cell::Cell::new(0usize);
        let get = |name: &str, shape: &[usize]| {
            let tensor = weights.tensor(name, shape, dtype, device)?;
            loaded_bytes.set(loaded_bytes.get() + tensor_bytes(&tensor));
            Ok::<_, ModelError>(tensor)
        };
        let norm = |prefix: &str| -> Result<Norm> {
            Norm::new(
                get(&format!("{prefix}.weight"), &[h])?,
                get(&format!("{prefix}.bias"), &[h])?,
                config.layer_norm_eps,
            )
        };
        let linear = |prefix: &str, out: usize, inp: usize| -> Result<Linear> {
            Linear::new(
                get(&format!("{prefix}.weight"), &[out, inp])?,
                Some(get(&format!("{prefix}.bias"), &[out])?),
            )
        };
        let layers = (0..config.num_hidden_layers)
            .map(|n| {
                let p = format!("gpt_neox.layers.{n}");
                Ok(Layer {
                    input_norm: norm(&format!("{p}.input_layernorm"))?,
                    post_attention_norm: norm(&format!("{p}.post_attention_layernorm"))?,
                    qkv: linear(&format!("{p}.attention.query_key_value"), 3 * h, h)?,
                    attention_out: linear(&format!("{p}.attention.dense"), h, h)?,
                    mlp_in: linear(&format!("{p}.mlp.dense_h_to_4h"), i, h)?,
                    mlp_out: linear(&format!("{p}.mlp.dense_4h_to_h"), h, i)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let head_name = HEAD_NAMES
            .iter()
            .find(|n| weights.contains(n))
            .unwrap_or(&HEAD_NAMES[0]);
        let embed_table = get("gpt_neox.embed_in.weight", &[v, h])?;
        let embed_bytes = tensor_bytes(&embed_table);
        let embed_in = Embedding::new(embed_table, h);
        let final_norm = norm("gpt_neox.final_layer_norm")?;
        let head = Linear::new(get(head_name, &[v, h])?, None)?;
        let rotary = Rotary::new(&config, dtype, device)?;
        let streamed_bytes = loaded_bytes.get() - embed_bytes;
        let weight_bytes =
            loaded_bytes.get() + tensor_bytes(&rotary.cos) + tensor_bytes(&rotary.sin);
        Ok(Self {
            embed_in,
            final_norm,
            head,
            rotary,
            layers,
            device: device.clone(),
            dtype,
            config,
            weight_bytes,
            streamed_bytes,
        })
    }

    pub fn config(&self) -> &NeoxConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Bytes of the model's tensors on its device: what loading it costs before any cache.
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// Bytes of weights one pass streams, however many tokens it has: what bounds a pass's
    /// speed from below on a machine of a given memory bandwidth.
    pub fn streamed_bytes(&self) -> usize {
        self.streamed_bytes
    }

    /// An empty cache for this model, pre-sized for `capacity` tokens (it grows if needed).
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        let c = &self.config;
        KvCache::new(
            c.num_hidden_layers,
            c.num_attention_heads,
            c.head_dim(),
            capacity,
            self.dtype,
            &self.device,
        )
    }

    /// Runs a block of new tokens (see [`KvCache::begin_block`] for `parents`) and returns f32
    /// logits `[tokens.len() - logits_from, vocab_size]` for the block's tokens from `logits_from` on.
    pub fn forward(
        &self,
        tokens: &[u32],
        parents: &[i32],
        cache: &mut KvCache,
        logits_from: usize,
    ) -> Result<Tensor> {
        super::compute_pool().install(|| self.forward_in_pool(tokens, parents, cache, logits_from))
    }

    fn forward_in_pool(
        &self,
        tokens: &[u32],
        parents: &[i32],
        cache: &mut KvCache,
        logits_from: usize,
    ) -> Result<Tensor> {
        if tokens.len() != parents.len() || tokens.is_empty() || logits_from >= tokens.len() {
            return Err(ModelError::Cache(format!(
                "block of {} tokens with {} parents and logits from {logits_from}",
                tokens.len(),
                parents.len()
            )));
        }
        let layout = cache.begin_block(parents)?;
        let inputs = self.block_inputs(&layout)?;
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mut hidden = self.embed_in.forward(&ids)?;
        for (index, layer) in self.layers.iter().enumerate() {
            hidden = layer.forward(&hidden, index, &inputs, cache, &self.config)?;
        }
        let rows = tokens.len() - logits_from;
        let hidden = hidden.narrow(1, logits_from, rows)?;
        let logits = self.head.forward(&self.final_norm.forward(&hidden)?)?;
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?)
    }

    fn block_inputs<'a>(&self, layout: &'a BlockLayout) -> Result<BlockInputs<'a>> {
        let (cos, sin) = self.rotary.select(&layout.positions, &self.device)?;
        let cpu_f32 = self.device.is_cpu() && self.dtype == DType::F32;
        let cpu_rotary = match cpu_f32 {
            true => Some((cos.flatten_all()?.to_vec1()?, sin.flatten_all()?.to_vec1()?)),
            false => None,
        };
        let mask = match &layout.mask {
            Some(m) if !cpu_f32 => Some(
                Tensor::from_slice(m, (layout.positions.len(), layout.total), &self.device)?
                    .to_dtype(self.dtype)?,
            ),
            _ => None,
        };
        Ok(BlockInputs {
            layout,
            cos,
            sin,
            cpu_rotary,
            mask,
        })
    }
}

impl Layer {
    fn forward(
        &self,
        x: &Tensor,
        index: usize,
        inputs: &BlockInputs,
        cache: &mut KvCache,
        config: &NeoxConfig,
    ) -> Result<Tensor> {
        let attention =
            self.attention(&self.input_norm.forward(x)?, index, inputs, cache, config)?;
        if config.use_parallel_residual {
            let mlp = self.mlp(&self.post_attention_norm.forward(x)?, config)?;
            Ok(((x + attention)? + mlp)?)
        } else {
            let x = (x + attention)?;
            let mlp = self.mlp(&self.post_attention_norm.forward(&x)?, config)?;
            Ok((x + mlp)?)
        }
    }

    fn attention(
        &self,
        x: &Tensor,
        index: usize,
        inputs: &BlockInputs,
        cache: &mut KvCache,
        config: &NeoxConfig,
    ) -> Result<Tensor> {
        let qkv = self.qkv.forward(x)?;
        let layout = inputs.layout;
        let Some((cos, sin)) = &inputs.cpu_rotary else {
            let (q, k, v) = split_rotate_tensors(&qkv, inputs, config)?;
            let (keys, values) = cache.write(index, &k, &v, layout.offset, layout.total)?;
            let merged = generic_attention(&q, &keys, &values, inputs.mask.as_ref())?;
            return self.attention_out.forward(&merged);
        };
        let (_, t, _) = qkv.dims3()?;
        let (heads, head_dim) = (config.num_attention_heads, config.head_dim());
        let shape = HeadShape {
            heads,
            head_dim,
            rotary_dims: config.rotary_dims(),
        };
        let split = with_cpu_f32(&qkv, |data| split_rotate(data, shape, cos, sin))?;
        let per_head = |data: Vec<f32>| Tensor::from_vec(data, (1, heads, t, head_dim), x.device());
        let (k, v) = (per_head(split.keys)?, per_head(split.values)?);
        let (keys, values) = cache.write(index, &k, &v, layout.offset, layout.total)?;
        let merged = attention::attend(&split.queries, &keys, &values, layout.mask.as_deref())?;
        self.attention_out.forward(&merged)
    }

    fn mlp(&self, x: &Tensor, config: &NeoxConfig) -> Result<Tensor> {
        let h = self.mlp_in.forward_then(x, Some(config.activation()))?;
        self.mlp_out.forward(&h)
    }
}

/// The fused product `[1, t, hidden * 3]` split into per-head queries, keys and values
/// `[1, heads, t, head_dim]` with rotary applied, in candle ops, for devices and dtypes the
/// CPU split does not cover.
fn split_rotate_tensors(
    qkv: &Tensor,
    inputs: &BlockInputs,
    config: &NeoxConfig,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (_, t, _) = qkv.dims3()?;
    let (heads, head_dim) = (config.num_attention_heads, config.head_dim());
    // transformers splits query_key_value per head: [.., heads, 3 * head_dim].
    let qkv = qkv.reshape((1, t, heads, 3 * head_dim))?.transpose(1, 2)?;
    let rotate = |x: Tensor| apply_rotary(&x, &inputs.cos, &inputs.sin, config.rotary_dims());
    let q = rotate(qkv.narrow(3, 0, head_dim)?)?;
    let k = rotate(qkv.narrow(3, head_dim, head_dim)?)?;
    let v = qkv.narrow(3, 2 * head_dim, head_dim)?.contiguous()?;
    Ok((q, k, v))
}

/// Attention with candle ops, for devices and dtypes the CPU kernel does not cover.
fn generic_attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let (_, heads, t, head_dim) = q.dims4()?;
    let hidden = heads * head_dim;
    let scores = (q.matmul(&keys.t()?)? * (1.0 / (head_dim as f64).sqrt()))?;
    let scores = match mask {
        Some(mask) => scores.broadcast_add(mask)?,
        None => scores,
    };
    let probs =
        candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(q.dtype())?;
    let merged = probs
        .matmul(values)?
        .transpose(1, 2)?
        .reshape((1, t, hidden))?;
    Ok(merged)
}

/// Rotates the first `dims` channels of each head (rotate-half form), leaves the rest.
fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor, dims: usize) -> Result<Tensor> {
    let head_dim = x.dim(D::Minus1)?;
    if dims == 0 {
        return Ok(x.contiguous()?);
    }
    let rotated = candle_nn::rotary_emb::rope(&x.narrow(3, 0, dims)?.contiguous()?, cos, sin)?;
    if dims == head_dim {
        return Ok(rotated);
    }
    let pass = x.narrow(3, dims, head_dim - dims)?;
    Ok(Tensor::cat(&[&rotated, &pass], 3)?.contiguous()?)
}

fn tensor_bytes(tensor: &Tensor) -> usize {
    tensor.elem_count() * tensor.dtype().size_in_bytes()
}

impl Rotary {
    fn new(config: &NeoxConfig, dtype: DType, device: &Device) -> Result<Self> {
        let dims = config.rotary_dims();
        let half = (dims / 2).max(1);
        let positions = config.max_position_embeddings;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                1.0 / (config.rotary_emb_base as f32).powf((2 * i) as f32 / dims.max(1) as f32)
            })
            .collect();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let table = |v: Vec<f32>| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, (positions, half), device)?.to_dtype(dtype)?)
        };
        Ok(Self {
            cos: table(cos)?,
            sin: table(sin)?,
        })
    }

    /// Rows of the tables for the given positions, `[t, dims / 2]`.
    fn select(&self, positions: &[u32], device: &Device) -> Result<(Tensor, Tensor)> {
        let max = self.cos.dim(0)?;
        let last = *positions.iter().max().expect("non-empty block") as usize;
        if last >= max {
            return Err(ModelError::TooLong {
                needed: last + 1,
                max,
            });
        }
        let first = positions[0] as usize;
        let contiguous = positions
            .iter()
            .enumerate()
            .all(|(i, &p)| p as usize == first + i);
        if contiguous {
            let t = positions.len();
            return Ok((self.cos.narrow(0, first, t)?, self.sin.narrow(0, first, t)?));
        }
        let index = Tensor::new(positions, device)?;
        Ok((
            self.cos.index_select(&index, 0)?,
            self.sin.index_select(&index, 0)?,
        ))
    }
}
