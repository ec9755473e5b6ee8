//! Element types: [`DType`] (from `neuron-sys`) and the [`NeuronRepr`] marker for Rust types
//! that can be copied in and out of tensors as plain bytes.

pub use crate::raw::DType;

/// A Rust element type that tensors can be read into and written from as raw bytes.
///
/// # Safety
///
/// Implementors must be plain old data: `Copy`, no padding bytes, no interior pointers, and
/// every bit pattern of `size_of::<Self>()` bytes must be a valid value. Tensor reads copy
/// device bytes straight into `&mut [Self]`, so a type with invalid bit patterns (`bool`,
/// `char`, enums, references) would be undefined behaviour. `size_of::<Self>()` must equal
/// `Self::DTYPE.size_in_bytes()`. This crate implements it for the primitive numbers and
/// `half::{f16, bf16}`; there is no reason to implement it elsewhere.
pub unsafe trait NeuronRepr: Copy + Send + Sync + 'static {
    /// The element type this Rust type stores.
    const DTYPE: DType;
}

macro_rules! neuron_repr {
    ($($ty:ty => $dtype:ident),+ $(,)?) => {
        $(
            // SAFETY: a primitive number: no padding, every bit pattern valid, and its size
            // is the dtype's (checked by the `sizes_match` test).
            unsafe impl NeuronRepr for $ty {
                const DTYPE: DType = DType::$dtype;
            }
        )+
    };
}

neuron_repr!(
    f32 => F32,
    i8 => I8,
    u8 => U8,
    i16 => I16,
    u16 => U16,
    i32 => I32,
    u32 => U32,
    i64 => I64,
    u64 => U64,
);

#[cfg(feature = "half")]
neuron_repr!(half::f16 => F16, half::bf16 => BF16);

/// Views a slice of plain-old-data elements as bytes.
pub(crate) fn as_bytes<T: NeuronRepr>(data: &[T]) -> &[u8] {
    // SAFETY: `T: NeuronRepr` has no padding, so every byte of the slice is initialised;
    // the length is the slice's size in bytes and u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), size_of_val(data)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: NeuronRepr>() {
        assert_eq!(size_of::<T>(), T::DTYPE.size_in_bytes(), "{}", T::DTYPE);
    }

    #[test]
    fn sizes_match() {
        check::<f32>();
        check::<i8>();
        check::<u8>();
        check::<i16>();
        check::<u16>();
        check::<i32>();
        check::<u32>();
        check::<i64>();
        check::<u64>();
        #[cfg(feature = "half")]
        {
            check::<half::f16>();
            check::<half::bf16>();
        }
    }

    #[test]
    fn as_bytes_is_little_endian_memory() {
        assert_eq!(as_bytes(&[1i32, 2]), &[1, 0, 0, 0, 2, 0, 0, 0]);
    }
}
