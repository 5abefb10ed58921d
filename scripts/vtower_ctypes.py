"""A minimal ctypes binding of libvtower's C API, for the benchmark and device-check scripts
(not a supported Python API)."""
import ctypes
from pathlib import Path

VT_DEVICE_CPU, VT_DEVICE_CUDA, VT_DEVICE_AUTO = 0, 1, 2
VT_DTYPE_AUTO, VT_DTYPE_F32, VT_DTYPE_BF16, VT_DTYPE_F16 = 0, 1, 2, 3


class LoadParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("device", ctypes.c_uint32),
                ("device_ordinal", ctypes.c_int32), ("n_threads", ctypes.c_uint32),
                ("max_image_pixels", ctypes.c_uint64), ("dtype", ctypes.c_uint32),
                ("max_image_tokens", ctypes.c_uint64), ("embedding_cache_bytes", ctypes.c_uint64),
                ("max_forward_bytes", ctypes.c_uint64)]


class VtError(RuntimeError):
    pass


class Lib:
    def __init__(self, path: Path):
        lib = ctypes.CDLL(str(path))
        P = ctypes.c_void_p
        PP = ctypes.POINTER(ctypes.c_void_p)
        lib.vt_load_params_default.restype = LoadParams
        lib.vt_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(LoadParams), PP, PP]
        lib.vt_free.argtypes = [P]
        lib.vt_preprocess.argtypes = [P, ctypes.c_char_p, ctypes.c_size_t, PP, PP]
        lib.vt_image_free.argtypes = [P]
        lib.vt_image_n_tokens.restype = ctypes.c_size_t
        lib.vt_image_n_tokens.argtypes = [P]
        lib.vt_forward.argtypes = [P, PP, ctypes.c_size_t, PP, PP]
        lib.vt_embeddings_data.restype = ctypes.POINTER(ctypes.c_float)
        lib.vt_embeddings_data.argtypes = [P, ctypes.c_size_t]
        lib.vt_embeddings_n_tokens.restype = ctypes.c_size_t
        lib.vt_embeddings_n_tokens.argtypes = [P, ctypes.c_size_t]
        lib.vt_embeddings_dim.restype = ctypes.c_size_t
        lib.vt_embeddings_dim.argtypes = [P]
        lib.vt_embeddings_free.argtypes = [P]
        lib.vt_error_message.restype = ctypes.c_char_p
        lib.vt_error_message.argtypes = [P]
        lib.vt_error_free.argtypes = [P]
        lib.vt_embeddings_copy.argtypes = [P, ctypes.c_size_t, ctypes.c_uint32, P, ctypes.c_size_t,
                                           PP]
        lib.vt_embeddings_copy_to_cuda.argtypes = [P, ctypes.c_size_t, ctypes.c_uint32,
                                                   ctypes.c_uint64, ctypes.c_size_t, PP]
        lib.vt_version.restype = ctypes.c_char_p
        self.lib = lib

    def version(self) -> str:
        return self.lib.vt_version().decode()

    def _check(self, status, err):
        if status != 0:
            msg = self.lib.vt_error_message(err).decode()
            self.lib.vt_error_free(err)
            raise VtError(msg)

    def load(self, model_dir, device=VT_DEVICE_CPU, dtype=VT_DTYPE_AUTO, n_threads=0):
        p = self.lib.vt_load_params_default()
        # A LoadParams shorter than the library's struct would make vtower read past it.
        assert p.struct_size == ctypes.sizeof(LoadParams), (p.struct_size, ctypes.sizeof(LoadParams))
        p.device, p.dtype, p.n_threads = device, dtype, n_threads
        model, err = ctypes.c_void_p(), ctypes.c_void_p()
        self._check(self.lib.vt_load(str(model_dir).encode(), ctypes.byref(p), ctypes.byref(model),
                                     ctypes.byref(err)), err)
        return Model(self, model)


class Model:
    def __init__(self, lib: Lib, handle):
        self.vt, self.h = lib, handle

    def close(self):
        if self.h:
            self.vt.lib.vt_free(self.h)
            self.h = None

    def preprocess(self, data: bytes):
        img, err = ctypes.c_void_p(), ctypes.c_void_p()
        self.vt._check(self.vt.lib.vt_preprocess(self.h, data, len(data), ctypes.byref(img),
                                                 ctypes.byref(err)), err)
        return img

    def forward_raw(self, images):
        arr = (ctypes.c_void_p * len(images))(*[i.value for i in images])
        emb, err = ctypes.c_void_p(), ctypes.c_void_p()
        self.vt._check(self.vt.lib.vt_forward(self.h, arr, len(images), ctypes.byref(emb),
                                              ctypes.byref(err)), err)
        return emb

    def forward(self, images):
        """Runs images and returns a list of numpy [n_tokens, dim] arrays (copies)."""
        import numpy as np
        lib = self.vt.lib
        emb = self.forward_raw(images)
        try:
            dim = lib.vt_embeddings_dim(emb)
            out = []
            for i in range(len(images)):
                n = lib.vt_embeddings_n_tokens(emb, i)
                out.append(np.ctypeslib.as_array(lib.vt_embeddings_data(emb, i), shape=(n * dim,))
                           .reshape(n, dim).copy())
            return out
        finally:
            lib.vt_embeddings_free(emb)


def element_size(dtype: int) -> int:
    return 4 if dtype == VT_DTYPE_F32 else 2


def copy_rows(vt: Lib, emb, index: int, dtype: int, n_values: int) -> bytes:
    """vt_embeddings_copy of image `index` as `dtype` (raw little-endian bytes)."""
    buf = ctypes.create_string_buffer(n_values * element_size(dtype))
    err = ctypes.c_void_p()
    vt._check(vt.lib.vt_embeddings_copy(emb, index, dtype, buf, len(buf), ctypes.byref(err)), err)
    return buf.raw


def copy_rows_to_cuda(vt: Lib, emb, index: int, dtype: int, device_ptr: int, n_bytes: int) -> None:
    """vt_embeddings_copy_to_cuda of image `index` into a device buffer the caller owns."""
    err = ctypes.c_void_p()
    vt._check(vt.lib.vt_embeddings_copy_to_cuda(emb, index, dtype, device_ptr, n_bytes,
                                                ctypes.byref(err)), err)
