"""Reader and writer for the IDX file format used by MNIST and Fashion-MNIST.

An IDX file is a header followed by a dense big-endian array:

    bytes 0-1   zero
    byte  2     dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64)
    byte  3     number of dimensions, ndim
    then        ndim sizes, each a big-endian uint32
    then        prod(sizes) items of the dtype, big-endian, row-major

The official files are gzip-compressed (`*.gz`); both compressed and
uncompressed files are read. Whether a file is gzip is decided by its first
two bytes, not its name, so a renamed file still reads correctly.
"""

import gzip
import os
import struct
import zlib

import numpy as np

# IDX dtype code -> big-endian NumPy dtype as stored in the file.
IDX_DTYPES = {
    0x08: np.dtype('u1'),
    0x09: np.dtype('i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}

GZIP_MAGIC = b'\x1f\x8b'


class IdxFormatError(ValueError):
    """A file is not a valid (or not a complete) IDX file."""


def read_idx_bytes(path):
    """
    Read the uncompressed bytes of an IDX file, gunzipping if needed.

    Inputs:
    - path: str or os.PathLike, a `.gz` or uncompressed IDX file.

    Returns:
    - data: bytes, the IDX header followed by the array data.

    Raises IdxFormatError if the file is gzip data that is corrupt or cut off,
    and OSError (e.g. FileNotFoundError) if it cannot be opened.
    """
    path = os.fspath(path)
    with open(path, 'rb') as f:
        raw = f.read()
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        # gzip.BadGzipFile is an OSError; a cut-off stream raises EOFError.
        raise IdxFormatError(
            '%s: corrupt or incomplete gzip data (%s: %s). Delete the file '
            'and download it again.' % (path, type(e).__name__, e)) from None


def parse_idx(data, name='<bytes>'):
    """
    Parse the uncompressed bytes of an IDX file into an array.

    Inputs:
    - data: bytes, an IDX header followed by the array data.
    - name: str, the file name to put in error messages.

    Returns:
    - array: numpy array of shape given by the header, in native byte order
      (uint8 for MNIST images and labels). The array is writable and owns
      its memory.

    Raises IdxFormatError if the header is invalid or the number of data bytes
    differs from what the header's dimensions require.
    """
    if len(data) < 4:
        raise IdxFormatError(
            '%s: only %d bytes, too short for an IDX header (4 bytes). The file '
            'is truncated or not an IDX file; delete it and download it again.'
            % (name, len(data)))
    zero1, zero2, code, ndim = struct.unpack('>BBBB', data[:4])
    if zero1 != 0 or zero2 != 0 or code not in IDX_DTYPES or ndim == 0:
        raise IdxFormatError(
            '%s: bad IDX magic number 0x%s (expected 0x0000, then a dtype code '
            'in %s, then ndim >= 1). This is not an uncompressed IDX file.'
            % (name, data[:4].hex(), sorted('0x%02X' % c for c in IDX_DTYPES)))
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IdxFormatError(
            '%s: truncated header: %d dimensions need %d header bytes, the file '
            'has %d bytes. Delete the file and download it again.'
            % (name, ndim, header_size, len(data)))
    shape = struct.unpack('>%dI' % ndim, data[4:header_size])
    dtype = IDX_DTYPES[code]
    # Python ints, so a huge header cannot overflow.
    expected = header_size + int(np.prod(shape, dtype=object)) * dtype.itemsize
    if len(data) != expected:
        what = 'truncated' if len(data) < expected else 'has trailing bytes'
        raise IdxFormatError(
            '%s: file %s: header says shape %s of %s, which needs %d bytes '
            '(uncompressed), but the file has %d bytes. Delete the file and '
            'download it again.'
            % (name, what, shape, dtype.name, expected, len(data)))
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder('='))  # copy: writable, native order


def read_idx(path):
    """
    Read an IDX file (gzip-compressed or not) into a NumPy array.

    Inputs:
    - path: str or os.PathLike, path of the IDX file.

    Returns:
    - array: numpy array with the shape and dtype stored in the file, e.g.
      uint8 of shape (N, 28, 28) for MNIST images and (N,) for labels.
      Values are returned as stored (0..255 pixels): no normalization.

    Raises IdxFormatError for corrupt gzip data, a bad magic number, or a
    byte count that does not match the header; the message names the file.
    """
    path = os.fspath(path)
    return parse_idx(read_idx_bytes(path), path)


def write_idx(path, array):
    """
    Write an array as an IDX file; gzip-compressed if `path` ends in `.gz`.

    Inputs:
    - path: str or os.PathLike, where to write.
    - array: numpy array of any shape with ndim >= 1 and a dtype that IDX can
      store (uint8, int8, int16, int32, float32, float64).

    The gzip header has mtime 0, so the same array always gives the same bytes.
    """
    path = os.fspath(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder('='): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder('=')
    if native not in codes or array.ndim == 0:
        raise ValueError('write_idx: array must have ndim >= 1 and dtype in %s; '
                         'got shape %s, dtype %s'
                         % ([d.name for d in IDX_DTYPES.values()],
                            array.shape, array.dtype))
    code = codes[native]
    header = struct.pack('>BBBB', 0, 0, code, array.ndim)
    header += struct.pack('>%dI' % array.ndim, *array.shape)
    data = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if path.endswith('.gz'):
        data = gzip.compress(data, mtime=0)
    with open(path, 'wb') as f:
        f.write(data)
