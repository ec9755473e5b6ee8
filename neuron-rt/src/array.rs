//! `ndarray` arrays in and out of tensors (feature `ndarray`).
//!
//! Tensors live in device memory, so there are no views *into* a tensor: arrays are copied
//! in and out. What avoids copies is on the host side: a contiguous (standard-layout) array
//! or view is written or read in place, without an intermediate buffer; other layouts go
//! through one temporary copy.

use std::sync::Arc;

use ndarray::{ArrayBase, ArrayD, Data, DataMut, Dimension, IxDyn};

use crate::dtype::NeuronRepr;
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::tensor::{Placement, Tensor, check_shape};

impl Tensor {
    /// Allocates a tensor with the array's shape and contents.
    ///
    /// # Errors
    /// As [`Tensor::allocate`] and [`Tensor::write_from`].
    #[cfg_attr(docsrs, doc(cfg(feature = "ndarray")))]
    pub fn from_array<T, S, D>(
        runtime: &Arc<Runtime>,
        placement: Placement,
        array: &ArrayBase<S, D>,
        name: &str,
    ) -> Result<Tensor>
    where
        T: NeuronRepr,
        S: Data<Elem = T>,
        D: Dimension,
    {
        let tensor = Tensor::allocate_shaped(runtime, placement, T::DTYPE, array.shape(), name)?;
        tensor.write_array(array)?;
        Ok(tensor)
    }

    /// Writes a whole array into the tensor. The array must have as many elements as the
    /// tensor and, if the tensor has a shape, that shape.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the shapes differ; otherwise as [`Tensor::write_from`].
    #[cfg_attr(docsrs, doc(cfg(feature = "ndarray")))]
    pub fn write_array<T, S, D>(&self, array: &ArrayBase<S, D>) -> Result<()>
    where
        T: NeuronRepr,
        S: Data<Elem = T>,
        D: Dimension,
    {
        self.check_array_shape(T::DTYPE, array.shape())?;
        match array.as_slice() {
            Some(data) => self.write_from(0, data),
            None => {
                let standard = array.as_standard_layout();
                let data = standard.as_slice().ok_or_else(|| Error::InvalidArgument {
                    what: "array",
                    message: "a standard-layout copy is not contiguous".into(),
                })?;
                self.write_from(0, data)
            }
        }
    }

    /// Reads the whole tensor as an array of its shape (one dimension of all its elements if
    /// it has no shape).
    ///
    /// # Errors
    /// As [`Tensor::to_vec`].
    #[cfg_attr(docsrs, doc(cfg(feature = "ndarray")))]
    pub fn to_array<T: NeuronRepr>(&self) -> Result<ArrayD<T>> {
        let data = self.to_vec::<T>()?;
        let shape = match self.shape() {
            Some(shape) => shape.to_vec(),
            None => vec![data.len()],
        };
        let elements = data.len();
        ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|_| Error::ShapeMismatch {
            tensor: self.name().to_string(),
            shape,
            elements,
        })
    }

    /// Reads the whole tensor into an existing array (in place when it is contiguous). The
    /// array must have as many elements as the tensor and, if the tensor has a shape, that
    /// shape.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the shapes differ; otherwise as [`Tensor::read_into`].
    #[cfg_attr(docsrs, doc(cfg(feature = "ndarray")))]
    pub fn read_array_into<T, S, D>(&self, out: &mut ArrayBase<S, D>) -> Result<()>
    where
        T: NeuronRepr,
        S: DataMut<Elem = T>,
        D: Dimension,
    {
        self.check_array_shape(T::DTYPE, out.shape())?;
        if let Some(slice) = out.as_slice_mut() {
            return self.read_into(0, slice);
        }
        let data = self.to_vec::<T>()?;
        for (dst, src) in out.iter_mut().zip(data) {
            *dst = src;
        }
        Ok(())
    }

    fn check_array_shape(&self, dtype: crate::DType, shape: &[usize]) -> Result<()> {
        self.check_dtype(dtype)?;
        match self.shape() {
            Some(own) if own != shape => Err(Error::ShapeMismatch {
                tensor: self.name().to_string(),
                shape: shape.to_vec(),
                elements: own.iter().product(),
            }),
            _ => check_shape(self.name(), shape, self.element_count(dtype)?),
        }
    }
}
