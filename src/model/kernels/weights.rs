//! How the kernels hold a weight matrix. Rows go in packs, interleaved 16 floats at a time:
//! the first 16 features of the pack's rows, then their next 16, and so on. A pack is as many
//! rows as the detected path's one-row register tile holds (AVX-512: 3, the height of all its
//! tiles; AVX2: 4), so a one-row product (every decoding step), and on AVX-512 a block of up to
//! 8 rows, reads each pack as one sequential stream, which a core streams about as fast as a
//! plain read. The same rows read side by side in the row-major layout are
//! streams a whole row apart: on a Zen 4 core they ran at about 3/4 of that rate (24.6 against
//! 31.5 GB/s, one thread), and whenever a row is a multiple of 4 KiB they all map to the same
//! L1 sets. Multi-row tiles read the same 64-byte pieces as before, only at other addresses, so
//! the bits do not change.

use super::super::aligned::AlignedF32;
use super::{Isa, LANES};

/// A weight matrix `[outputs, features]`, laid out for the kernels.
pub(crate) struct WeightMatrix {
    data: AlignedF32,
    outputs: usize,
    features: usize,
    pack: usize,
}

impl WeightMatrix {
    /// The kernels' copy of the row-major `[outputs, features]` matrix `row_major`, in packs
    /// for the detected path.
    pub(crate) fn new(row_major: &[f32], outputs: usize) -> Self {
        Self::packed(row_major, outputs, Isa::detected().pack())
    }

    /// `row_major` in packs of `pack` rows (the last padded with zero rows, never read) when
    /// the features are whole 16s, as in every checkpoint we know; else row-major, whose row
    /// tails the kernels read apart. Every pack gives the same bits on every path.
    pub(crate) fn packed(row_major: &[f32], outputs: usize, pack: usize) -> Self {
        let features = row_major.len() / outputs.max(1);
        assert_eq!(
            features * outputs,
            row_major.len(),
            "not {outputs} whole rows"
        );
        if !features.is_multiple_of(LANES) || features == 0 || pack == 1 {
            let data = AlignedF32::from_slice(row_major);
            return Self::from_parts(data, outputs, features, 1);
        }
        let mut data = AlignedF32::zeros_on_huge_pages(outputs.div_ceil(pack) * pack * features);
        let layout = Weights {
            data: &[],
            outputs,
            features,
            pack,
        };
        let packed = data.as_mut_slice();
        for (o, row) in row_major.chunks_exact(features).enumerate() {
            for (s, piece) in row.chunks_exact(LANES).enumerate() {
                let at = layout.offset(o, s * LANES);
                packed[at..at + LANES].copy_from_slice(piece);
            }
        }
        Self::from_parts(data, outputs, features, pack)
    }

    fn from_parts(data: AlignedF32, outputs: usize, features: usize, pack: usize) -> Self {
        Self {
            data,
            outputs,
            features,
            pack,
        }
    }

    pub(crate) fn view(&self) -> Weights<'_> {
        Weights {
            data: self.data.as_slice(),
            outputs: self.outputs,
            features: self.features,
            pack: self.pack,
        }
    }
}

/// A weight matrix as the kernels read it: row-major (`pack` 1) or in packs.
#[derive(Clone, Copy)]
pub(crate) struct Weights<'a> {
    data: &'a [f32],
    outputs: usize,
    features: usize,
    pack: usize,
}

impl<'a> Weights<'a> {
    /// The rows of `data`, `features` floats each, one after another.
    pub(crate) fn row_major(data: &'a [f32], features: usize) -> Self {
        Self {
            data,
            outputs: data.len() / features,
            features,
            pack: 1,
        }
    }

    pub(crate) fn outputs(&self) -> usize {
        self.outputs
    }

    pub(crate) fn features(&self) -> usize {
        self.features
    }

    /// Rows `rows` as a matrix of their own; the range starts at a pack.
    pub(crate) fn rows(&self, rows: std::ops::Range<usize>) -> Self {
        assert!(
            rows.start.is_multiple_of(self.pack)
                && rows.start <= rows.end
                && rows.end <= self.outputs,
            "rows {rows:?} of {} in packs of {}",
            self.outputs,
            self.pack
        );
        let packed_end = rows.end.div_ceil(self.pack) * self.pack;
        let end = (packed_end * self.features).min(self.data.len());
        Self {
            data: &self.data[rows.start * self.features..end],
            outputs: rows.len(),
            ..*self
        }
    }

    /// Where the 16 floats of row `o` from feature `i` (a multiple of 16) start.
    #[inline(always)]
    pub(crate) fn offset(&self, o: usize, i: usize) -> usize {
        (o / self.pack) * self.pack * self.features + (o % self.pack) * LANES + i * self.pack
    }

    /// Floats from one 16 features of a row to its next 16.
    #[inline(always)]
    pub(crate) fn step_stride(&self) -> usize {
        LANES * self.pack
    }

    /// The whole 16s of row `o`'s features, 16 at a time.
    pub(crate) fn pieces(&self, o: usize) -> impl Iterator<Item = &'a [f32]> + '_ {
        (0..self.features / LANES).map(move |s| &self.data[self.offset(o, s * LANES)..][..LANES])
    }

    /// Row `o`'s features past the last whole 16 (only a row-major matrix has any).
    pub(crate) fn tail(&self, o: usize) -> &'a [f32] {
        let whole = self.features / LANES * LANES;
        if whole == self.features {
            return &[];
        }
        assert_eq!(self.pack, 1, "a packed matrix has no tails");
        &self.data[o * self.features..][whole..self.features]
    }

    /// The data, from which every [`Self::offset`] of its rows and whole 16s is in range.
    pub(crate) fn data(&self) -> &'a [f32] {
        let last = self.outputs.max(1) - 1;
        let whole = self.features / LANES * LANES;
        if self.outputs > 0 && whole > 0 {
            assert!(self.offset(last, whole - LANES) + LANES <= self.data.len());
        }
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_matrix_holds_every_row_where_offset_says() {
        for (outputs, features) in [(1, 16), (8, 32), (13, 48), (24, 16)] {
            let row_major: Vec<f32> = (0..outputs * features).map(|v| v as f32).collect();
            for pack in [1, 3, 4, 8] {
                let matrix = WeightMatrix::packed(&row_major, outputs, pack);
                let weights = matrix.view();
                for (o, row) in row_major.chunks(features).enumerate() {
                    let read: Vec<f32> = weights.pieces(o).flatten().copied().collect();
                    assert_eq!(
                        read, row,
                        "{outputs}x{features} in packs of {pack}: row {o}"
                    );
                }
            }
        }
    }

    #[test]
    fn rows_of_a_matrix_are_a_matrix() {
        let (outputs, features) = (21, 32);
        let row_major: Vec<f32> = (0..outputs * features).map(|v| v as f32).collect();
        let matrix = WeightMatrix::packed(&row_major, outputs, 8);
        let tail = matrix.view().rows(16..21);
        assert_eq!(tail.outputs(), 5);
        for o in 0..5 {
            let read: Vec<f32> = tail.pieces(o).flatten().copied().collect();
            assert_eq!(read, row_major[(16 + o) * features..][..features]);
        }
    }

    #[test]
    fn shapes_with_tails_stay_row_major() {
        let row_major: Vec<f32> = (0..3 * 20).map(|v| v as f32).collect();
        let matrix = WeightMatrix::packed(&row_major, 3, 8);
        let weights = matrix.view();
        assert_eq!(weights.tail(2), &row_major[56..60]);
        let read: Vec<f32> = weights.pieces(1).flatten().copied().collect();
        assert_eq!(read, row_major[20..36]);
    }
}
