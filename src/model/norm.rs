//! The model's layer norms: on the CPU in f32 on the kernels' layer norm (the same bits as
//! candle's, faster for many rows), elsewhere candle's own.

use candle_core::{DType, Module, Tensor};
use candle_nn::LayerNorm;

use super::error::Result;
use super::kernels::{layer_norm_rows, with_cpu_f32};

pub(crate) struct Norm {
    candle: LayerNorm,
    /// Weight and bias as plain floats, for the kernel (CPU and f32 only).
    cpu_f32: Option<(Vec<f32>, Vec<f32>)>,
    eps: f64,
}

impl Norm {
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Result<Self> {
        let cpu_f32 = match weight.device().is_cpu() && weight.dtype() == DType::F32 {
            true => Some((weight.to_vec1()?, bias.to_vec1()?)),
            false => None,
        };
        Ok(Self {
            candle: LayerNorm::new(weight, bias, eps),
            cpu_f32,
            eps,
        })
    }

    /// The norm over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.cpu_f32 {
            Some((weight, bias)) if x.device().is_cpu() && x.dtype() == DType::F32 => {
                let out = with_cpu_f32(x, |data| {
                    layer_norm_rows(data, weight, bias, self.eps as f32)
                })?;
                Ok(Tensor::from_vec(out, x.shape(), x.device())?)
            }
            _ => Ok(self.candle.forward(x)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_kernel_gives_candles_bits_and_shape() {
        let weight = Tensor::new(&[1.5f32, -0.5, 2.0, 1.0], &Device::Cpu).unwrap();
        let bias = Tensor::new(&[0.1f32, 0.2, -0.3, 0.0], &Device::Cpu).unwrap();
        let norm = Norm::new(weight.clone(), bias.clone(), 1e-5).unwrap();
        let x = Tensor::arange(0f32, 24.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 6, 4))
            .unwrap();
        // A block's last rows, as the output head's norm gets them: a view at an offset.
        let x = x.narrow(1, 2, 4).unwrap();
        let got = norm.forward(&x).unwrap();
        let want = LayerNorm::new(weight, bias, 1e-5).forward(&x).unwrap();
        assert_eq!(got.dims(), [1, 4, 4]);
        let bits = |t: &Tensor| -> Vec<u32> {
            let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v.iter().map(|x| x.to_bits()).collect()
        };
        assert_eq!(bits(&got), bits(&want));
    }
}
