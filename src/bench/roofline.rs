//! The arithmetic of the engine bench (`make bench`): a forward pass's cost set against what
//! bounds it on this machine, streaming its weights and KV cache at the read ceiling or
//! running its multiply-adds at the compute ceiling. The bench measures; these functions turn
//! its measurements into the figures it prints, so that each figure is tested to mean what its
//! label says.

use super::stats::median;

/// One repeat of a block size's measurement, taken in this order: a read of the ceiling's
/// buffer, a 1-row pass, another read, the block's pass. A shared machine's bandwidth drifts
/// within minutes, so each pass is set against the read right before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedRepeat {
    /// GB/s of the read right before the 1-row pass.
    pub read_before_one_row_gbs: f64,
    pub one_row_s: f64,
    /// GB/s of the read right before the block's pass.
    pub read_before_block_gbs: f64,
    pub block_s: f64,
}

/// A block size's pass cost: medians over its repeats of figures paired within each repeat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PassCost {
    /// Median µs of the block's pass.
    pub micros: f64,
    /// Median of (block pass / 1-row pass).
    pub x_one_row: f64,
    /// Median of (bytes streamed / block pass) / (read right before it), in %.
    pub pct_ceiling: f64,
    /// Median of (1-row pass - bytes streamed at the read right before it), µs; `None` where
    /// the weights were not read from memory, which the ceiling's read does not measure.
    pub paired_fixed_micros: Option<f64>,
}

impl PassCost {
    /// The cost of passes that stream `bytes` (weights and KV cache) from these repeats
    /// (`None` without any).
    /// `from_memory` says whether the weights are far larger than the caches, so that the reads
    /// of the ceiling's buffer measure what the passes stream at.
    pub fn of(repeats: &[PairedRepeat], bytes: f64, from_memory: bool) -> Option<Self> {
        let each = |figure: &dyn Fn(&PairedRepeat) -> f64| {
            median(&repeats.iter().map(figure).collect::<Vec<_>>())
        };
        Some(Self {
            micros: each(&|r| r.block_s * 1e6)?,
            x_one_row: each(&|r| r.block_s / r.one_row_s)?,
            pct_ceiling: each(&|r| pct_of(gbs(bytes, r.block_s), r.read_before_block_gbs))?,
            paired_fixed_micros: if from_memory {
                Some(each(&|r| {
                    fixed_cost_micros(r.one_row_s * 1e6, bytes, r.read_before_one_row_gbs)
                })?)
            } else {
                None
            },
        })
    }
}

/// GB/s of `bytes` streamed in `seconds`.
pub fn gbs(bytes: f64, seconds: f64) -> f64 {
    bytes / seconds / 1e9
}

/// `rate` as a percentage of `ceiling`.
pub fn pct_of(rate: f64, ceiling: f64) -> f64 {
    100.0 * rate / ceiling
}

/// What a pass of `pass_micros` costs beyond streaming its `bytes` (weights and KV cache) at
/// `read_gbs`: the part of a pass that does not scale with what it reads.
pub fn fixed_cost_micros(pass_micros: f64, bytes: f64, read_gbs: f64) -> f64 {
    pass_micros - bytes / (read_gbs * 1e3)
}

/// The least a pass of some rows can cost on this machine: streaming its bytes once at the
/// read ceiling, or every row's f32 multiply-adds at the compute ceiling, whichever takes
/// longer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roofline {
    /// µs to stream the pass's bytes at the read ceiling.
    pub floor_micros: f64,
    /// µs of one row's multiply-adds at the compute ceiling.
    pub compute_micros_per_row: f64,
}

impl Roofline {
    /// For a pass that streams `bytes` (weights and KV cache) and runs `fmas_per_row` f32
    /// multiply-adds per row, against a read ceiling in GB/s and a compute ceiling in f32
    /// multiply-adds per second.
    pub fn new(bytes: f64, fmas_per_row: f64, read_gbs: f64, fma_per_s: f64) -> Self {
        Self {
            floor_micros: bytes / (read_gbs * 1e3),
            compute_micros_per_row: fmas_per_row / fma_per_s * 1e6,
        }
    }

    /// µs of a pass of `rows` rows at the roofline.
    pub fn micros(&self, rows: usize) -> f64 {
        self.floor_micros
            .max(rows as f64 * self.compute_micros_per_row)
    }

    /// A pass of `rows` rows at the roofline, as a multiple of one row's.
    pub fn x_one_row(&self, rows: usize) -> f64 {
        self.micros(rows) / self.micros(1)
    }
}

/// What a pass reads and computes beyond its weights after `context` tokens: every layer's
/// keys and values (f32), read once, and per row one multiply-add per key feature (scores) and
/// per value feature (the weighted sum).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    pub layers: usize,
    pub hidden: usize,
    pub context: usize,
}

impl Attention {
    /// Bytes of the KV cache a pass reads, once.
    pub fn cache_bytes(&self) -> f64 {
        (2 * self.layers * self.context * self.hidden * 4) as f64
    }

    /// Multiply-adds of one row's attention over the context.
    pub fn fmas_per_row(&self) -> f64 {
        (2 * self.layers * self.context * self.hidden) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYTES: f64 = 1.0e9;

    /// A repeat at `read` GB/s (both reads) whose 1-row pass streams at that rate plus
    /// `fixed_s`, and whose block takes `x` times the 1-row pass.
    fn repeat(read: f64, fixed_s: f64, x: f64) -> PairedRepeat {
        let one_row_s = BYTES / (read * 1e9) + fixed_s;
        PairedRepeat {
            read_before_one_row_gbs: read,
            one_row_s,
            read_before_block_gbs: read,
            block_s: x * one_row_s,
        }
    }

    #[test]
    fn each_pass_is_set_against_the_read_right_before_it() {
        // Bandwidth drifts from 20 to 40 GB/s over the repeats and each pass streams at its
        // read: against the first read alone, two of three would be at 200%.
        let repeats: Vec<_> = [20.0, 40.0, 40.0].map(|read| repeat(read, 0.0, 1.0)).into();
        let cost = PassCost::of(&repeats, BYTES, true).unwrap();
        assert_eq!(cost.x_one_row, 1.0);
        assert!((cost.pct_ceiling - 100.0).abs() < 1e-9);
        assert!(cost.paired_fixed_micros.unwrap().abs() < 1e-6);
        assert!((cost.micros - 25_000.0).abs() < 1e-6);
    }

    #[test]
    fn the_fixed_cost_uses_the_read_before_the_one_row_pass_not_the_block() {
        let mut r = repeat(25.0, 0.002, 1.5);
        // A faster read before the block must not change the 1-row pass's fixed cost, but does
        // lower the block's share of its ceiling.
        r.read_before_block_gbs = 50.0;
        let cost = PassCost::of(&[r], BYTES, true).unwrap();
        assert!((cost.paired_fixed_micros.unwrap() - 2000.0).abs() < 1e-6);
        let block_gbs = BYTES / r.block_s / 1e9;
        assert!((cost.pct_ceiling - 100.0 * block_gbs / 50.0).abs() < 1e-9);
        assert!(cost.pct_ceiling < 50.0);
    }

    #[test]
    fn ratios_are_medians_of_paired_ratios_not_ratios_of_medians() {
        // Paired ratios 1.2, 1.1 and 1.3 (median 1.2); the medians of each pass alone,
        // 78 and 60 ms, would make it 1.3.
        let repeats =
            [(0.040, 0.048), (0.100, 0.110), (0.060, 0.078)].map(|(one, block)| PairedRepeat {
                read_before_one_row_gbs: 30.0,
                one_row_s: one,
                read_before_block_gbs: 30.0,
                block_s: block,
            });
        let cost = PassCost::of(&repeats, BYTES, true).unwrap();
        assert!((cost.x_one_row - 1.2).abs() < 1e-12);
        assert!((cost.micros - 78_000.0).abs() < 1e-6);
    }

    #[test]
    fn weights_served_from_cache_get_no_paired_fixed_cost() {
        let cost = PassCost::of(&[repeat(30.0, 0.001, 2.0)], BYTES, false).unwrap();
        assert_eq!(cost.paired_fixed_micros, None);
        assert!((cost.x_one_row - 2.0).abs() < 1e-12);
        assert!(PassCost::of(&[], BYTES, true).is_none());
    }

    #[test]
    fn the_roofline_is_memory_bound_until_the_rows_compute_longer_than_the_read() {
        // 1 GB at 25 GB/s: 40 ms; 250 M multiply-adds per row at 50 G/s: 5 ms per row.
        let roof = Roofline::new(BYTES, BYTES / 4.0, 25.0, 50.0e9);
        assert!((roof.floor_micros - 40_000.0).abs() < 1e-6);
        assert!((roof.compute_micros_per_row - 5_000.0).abs() < 1e-6);
        assert_eq!(roof.micros(1), roof.floor_micros);
        assert_eq!(roof.x_one_row(8), 1.0);
        assert!((roof.x_one_row(16) - 2.0).abs() < 1e-12);
        assert!((roof.micros(32) - 160_000.0).abs() < 1e-6);
    }

    #[test]
    fn attention_reads_every_layers_keys_and_values_once() {
        // Pythia-410M: 24 layers of 1024 features; after 1500 tokens, 2 x 24 x 1500 x 1024
        // floats (295 MB) and 73.7 M multiply-adds per row.
        let attention = Attention {
            layers: 24,
            hidden: 1024,
            context: 1500,
        };
        assert_eq!(attention.cache_bytes(), 294_912_000.0);
        assert_eq!(attention.fmas_per_row(), 73_728_000.0);
    }

    #[test]
    fn rates_and_fixed_costs_are_in_the_units_their_names_say() {
        assert!((gbs(3.0e9, 0.1) - 30.0).abs() < 1e-9);
        assert!((pct_of(27.0, 36.0) - 75.0).abs() < 1e-9);
        // 1.5 GB at 30 GB/s takes 50 ms; a 52 ms pass has 2 ms beyond it.
        assert!((fixed_cost_micros(52_000.0, 1.5e9, 30.0) - 2_000.0).abs() < 1e-6);
        // A pass faster than the read (weights partly cached) shows as a negative fixed cost
        // rather than being hidden.
        assert!(fixed_cost_micros(45_000.0, 1.5e9, 30.0) < 0.0);
    }
}
