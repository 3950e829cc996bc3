//! Where a product writes: a window of columns of a row-major `[rows, stride]` buffer, so that
//! the parallel tasks of one product each fill their own outputs of every row in place.

use std::marker::PhantomData;

/// Columns `first..first + width` of every row of a row-major buffer: output `o` of input row
/// `r` goes to `row(r)[o]`.
pub(crate) struct Columns<'a> {
    /// Column `first` of row 0.
    start: *mut f32,
    stride: usize,
    rows: usize,
    width: usize,
    _buffer: PhantomData<&'a mut [f32]>,
}

// SAFETY: a window is the only access to its elements (see `window`), like a `&mut [f32]`.
unsafe impl Send for Columns<'_> {}

impl<'a> Columns<'a> {
    /// All of `dst`, `rows` rows of `dst.len() / rows`.
    pub(crate) fn all(dst: &'a mut [f32], rows: usize) -> Self {
        assert!(
            rows > 0 && dst.len().is_multiple_of(rows),
            "not {rows} whole rows"
        );
        let stride = dst.len() / rows;
        Self {
            start: dst.as_mut_ptr(),
            stride,
            rows,
            width: stride,
            _buffer: PhantomData,
        }
    }

    /// Columns `first..first + width` of the `rows` rows of `stride` floats at `base`.
    ///
    /// # Safety
    /// `base` must point to `rows * stride` writable floats that outlive `'a`, with
    /// `first + width <= stride`, and no other live reference or window may overlap these
    /// columns of these rows.
    pub(crate) unsafe fn window(
        base: *mut f32,
        stride: usize,
        rows: usize,
        first: usize,
        width: usize,
    ) -> Self {
        assert!(first + width <= stride, "columns past the row");
        Self {
            start: base.wrapping_add(first),
            stride,
            rows,
            width,
            _buffer: PhantomData,
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// This window's part of row `r`.
    pub(crate) fn row(&mut self, r: usize) -> &mut [f32] {
        assert!(r < self.rows, "row {r} of {}", self.rows);
        // SAFETY: row `r`'s window lies inside the buffer and only this window reaches it
        // (`all` borrows the buffer, `window`'s caller promised it).
        unsafe { std::slice::from_raw_parts_mut(self.start.add(r * self.stride), self.width) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_reach_their_own_columns_of_every_row() {
        let mut buffer = vec![0f32; 3 * 5];
        let base = buffer.as_mut_ptr();
        // SAFETY: columns 0..2 and 2..5 of the 3 rows do not overlap; `buffer` outlives both.
        let (mut left, mut right) = unsafe {
            (
                Columns::window(base, 5, 3, 0, 2),
                Columns::window(base, 5, 3, 2, 3),
            )
        };
        for r in 0..3 {
            left.row(r).fill(1.0 + r as f32);
            right.row(r).fill(-1.0);
        }
        assert_eq!(
            buffer,
            [1., 1., -1., -1., -1., 2., 2., -1., -1., -1., 3., 3., -1., -1., -1.]
        );
        let mut all = Columns::all(&mut buffer, 3);
        assert_eq!((all.rows(), all.width()), (3, 5));
        assert_eq!(all.row(2), [3., 3., -1., -1., -1.]);
    }
}
