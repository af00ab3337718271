//! ST-LPIPS (Ghildyal & Liu 2022), the shift-tolerant AlexNet variant of LPIPS (Zhang et al. 2018),
//! rebuilt in burn and loaded from the `stlpips-pytorch` wheel's legacy `.pth` file
//! (`stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth`, BSD-2-clause). Training only.
//!
//! LPIPS(a, b) = Σ_l mean_hw( w_l · (n(f_l(a)) − n(f_l(b)))² ), with f_l the five ReLU outputs of
//! the trunk, n the channel-wise unit normalisation, w_l the linear heads (1×1 conv, no bias).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::PadMode;
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::HashMap;

use crate::model::blocks::conv_fwd;

/// The trunk's convolutions: (in, out, kernel, padding) of features 0, 5, 9, 11, 13.
const CONVS: [(usize, usize, usize, usize); 5] = [
    (3, 64, 11, 2),
    (64, 192, 5, 2),
    (192, 384, 3, 1),
    (384, 256, 3, 1),
    (256, 256, 3, 1),
];
/// Their names in the PyTorch state dict (slice of the trunk, index inside `features`).
const CONV_KEYS: [&str; 5] = [
    "net.slice1.0",
    "net.slice2.5",
    "net.slice3.9",
    "net.slice4.11",
    "net.slice5.13",
];

#[derive(Module, Debug)]
pub struct StLpips {
    convs: Vec<Conv2d>,
    /// Linear heads, [1, C, 1, 1] each.
    lins: Vec<Param<Tensor<4>>>,
}

impl StLpips {
    fn empty(device: &Device) -> Self {
        Self {
            convs: CONVS
                .iter()
                .map(|&(i, o, k, p)| {
                    Conv2dConfig::new([i, o], [k, k])
                        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                        .init(device)
                })
                .collect(),
            lins: CONVS
                .iter()
                .map(|&(_, o, _, _)| Param::from_tensor(Tensor::zeros([1, o, 1, 1], device)))
                .collect(),
        }
    }

    /// Loads the network from the wheel's `alex_shift_tolerant.pth`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let reader = pytorch_reader::PytorchReader::new(path).with_context(|| {
            format!(
                "reading {}\n---> HINT: `python3 tools/corpus.py` fetches it from the stlpips-pytorch wheel",
                path.display()
            )
        })?;
        let mut tensors: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
        for (name, t) in reader.tensors() {
            let bytes = t.read().with_context(|| format!("{}: tensor {name}", path.display()))?;
            let values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                .collect();
            tensors.insert(name.clone(), (t.shape().to_vec(), values));
        }
        let mut take = |name: String, shape: &[usize]| -> Result<Tensor<1>> {
            let Some((s, v)) = tensors.remove(&name) else {
                let mut keys: Vec<_> = tensors.keys().cloned().collect();
                keys.sort();
                bail!("{}: no tensor {name}; it has {keys:?}", path.display());
            };
            if s.iter().product::<usize>() != shape.iter().product::<usize>() {
                bail!("{}: tensor {name} has shape {s:?}, expected {shape:?}", path.display());
            }
            Ok(Tensor::from_data(
                TensorData::new(v, [shape.iter().product::<usize>()]),
                device,
            ))
        };
        let mut net = Self::empty(device);
        for (i, (&(cin, cout, k, _), key)) in CONVS.iter().zip(CONV_KEYS).enumerate() {
            let w = take(format!("{key}.weight"), &[cout, cin, k, k])?.reshape([cout, cin, k, k]);
            let b = take(format!("{key}.bias"), &[cout])?;
            net.convs[i].weight = Param::from_tensor(w);
            net.convs[i].bias = Some(Param::from_tensor(b));
            net.lins[i] =
                Param::from_tensor(take(format!("lin{i}.model.1.weight"), &[1, cout, 1, 1])?.reshape([1, cout, 1, 1]));
        }
        // Frozen: LPIPS is a fixed metric.
        Ok(net.no_grad())
    }

    /// The five ReLU outputs of the shift-tolerant AlexNet trunk for x in [-1, 1].
    fn features(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        // ScalingLayer of LPIPS v0.1: (x − shift) / scale.
        let device = x.device();
        let shift = Tensor::<1>::from_floats([-0.030, -0.088, -0.188], &device).reshape([1, 3, 1, 1]);
        let scale = Tensor::<1>::from_floats([0.458, 0.448, 0.450], &device).reshape([1, 3, 1, 1]);
        let x = (x - shift) / scale;
        let relu = |t: Tensor<4>| t.clamp_min(0.0);
        let pool = |t: Tensor<4>| max_pool2d(t, MaxPoolOptions::new([3, 3]).with_stride([1, 1]));
        let h1 = relu(blur_down(conv_fwd(&self.convs[0], x))); // conv s1 → blur-pool ↓2 → ReLU
        let h2 = relu(conv_fwd(&self.convs[1], blur_down(pool(h1.clone()))));
        let h3 = relu(conv_fwd(&self.convs[2], blur_down(pool(h2.clone()))));
        let h4 = relu(conv_fwd(&self.convs[3], h3.clone()));
        let h5 = relu(conv_fwd(&self.convs[4], h4.clone()));
        vec![h1, h2, h3, h4, h5]
    }

    /// Per-image ST-LPIPS distance, [B], for a, b in [-1, 1] of the same shape.
    pub fn forward(&self, a: Tensor<4>, b: Tensor<4>) -> Tensor<1> {
        let fb: Vec<Tensor<4>> = self.features(b).into_iter().map(|t| t.detach()).collect();
        self.distance_to(a, &fb)
    }

    fn distance_to(&self, a: Tensor<4>, fb: &[Tensor<4>]) -> Tensor<1> {
        let n = a.dims()[0];
        let mut total: Option<Tensor<1>> = None;
        for ((fa, fb), lin) in self.features(a).into_iter().zip(fb).zip(&self.lins) {
            let d = (unit(fa) - unit(fb.clone())).powi_scalar(2); // [B, C, h, w]
            let l = (d * lin.val()).sum_dim(1).mean_dim(2).mean_dim(3).reshape([n]); // [B]
            total = Some(match total {
                Some(t) => t + l,
                None => l,
            });
        }
        total.expect("five layers")
    }
}

/// Channel-wise unit normalisation of LPIPS: x / (‖x‖₂ over channels + 1e-10).
fn unit(x: Tensor<4>) -> Tensor<4> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt(); // [B, 1, h, w]
    x / (norm + 1e-10)
}

/// Anti-aliased downsampling (Zhang 2019, "pad_more"): reflect-pad 2 on each side, depthwise
/// [1, 2, 1]ᵀ[1, 2, 1]/16 blur, stride 2.
fn blur_down(x: Tensor<4>) -> Tensor<4> {
    let [_, c, _, _] = x.dims();
    let device = x.device();
    let k = [1.0f32, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0].map(|v| v / 16.0);
    let w = Tensor::<1>::from_floats(k, &device)
        .reshape([1, 1, 3, 3])
        .repeat_dim(0, c); // [C, 1, 3, 3]
    let x = x.pad([(2, 2), (2, 2)], PadMode::Reflect);
    conv2d(x, w, None, ConvOptions::new([2, 2], [0, 0], [1, 1], c))
}
