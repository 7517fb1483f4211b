/*
 * s3dlio._bytesview: the BytesView type, a read-write view of memory that the
 * native core allocated for a GET result.
 *
 * Why a C type: Python 3.11 classes cannot export the buffer protocol, and
 * numpy.frombuffer / memoryview must share this memory without a copy.
 *
 * Ownership: a view owns `alloc` and frees it with `free_fn` (s3dl_free,
 * passed in as an address) when release() is called or the last reference
 * goes.  release() refuses while buffer exports (memoryviews, numpy arrays)
 * are alive, so no export can outlive the memory.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef void (*free_fn_t)(void *);

typedef struct {
    PyObject_HEAD
    void *alloc;        /* owned; NULL once released */
    char *data;         /* first byte of data inside alloc */
    Py_ssize_t length;
    Py_ssize_t exports; /* live buffer exports */
    int released;
    free_fn_t free_fn;
} BytesView;

static PyTypeObject BytesViewType;

static void bv_free_memory(BytesView *self)
{
    if (self->alloc && self->free_fn)
        self->free_fn(self->alloc);
    self->alloc = NULL;
    self->data = NULL;
    self->length = 0;
    self->released = 1;
}

static BytesView *bv_make(void *alloc, char *data, Py_ssize_t length, free_fn_t free_fn)
{
    BytesView *self = PyObject_New(BytesView, &BytesViewType);
    if (!self)
        return NULL;
    self->alloc = alloc;
    self->data = data;
    self->length = length;
    self->exports = 0;
    self->released = 0;
    self->free_fn = free_fn;
    return self;
}

static void bv_dealloc(BytesView *self)
{
    bv_free_memory(self);
    PyObject_Free(self);
}

static int bv_released(BytesView *self)
{
    if (self->released) {
        PyErr_SetString(PyExc_ValueError, "operation on a released BytesView");
        return 1;
    }
    return 0;
}

static int bv_getbuffer(BytesView *self, Py_buffer *view, int flags)
{
    if (bv_released(self))
        return -1;
    static char empty[1];
    char *data = self->data ? self->data : empty;
    if (PyBuffer_FillInfo(view, (PyObject *)self, data, self->length, 0, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void bv_releasebuffer(BytesView *self, Py_buffer *view) { self->exports--; }

static PyBufferProcs bv_as_buffer = {
    (getbufferproc)bv_getbuffer,
    (releasebufferproc)bv_releasebuffer,
};

static Py_ssize_t bv_length(BytesView *self) { return self->length; }

static PyObject *bv_bytes(BytesView *self, PyObject *unused)
{
    if (bv_released(self))
        return NULL;
    return PyBytes_FromStringAndSize(self->data, self->length);
}

static PyObject *bv_memoryview(BytesView *self, PyObject *unused)
{
    return PyMemoryView_FromObject((PyObject *)self);
}

static PyObject *bv_release(BytesView *self, PyObject *unused)
{
    if (self->exports > 0) {
        PyErr_Format(PyExc_BufferError,
                     "cannot release BytesView: %zd buffer export(s) (memoryview, numpy array) "
                     "still use its memory",
                     self->exports);
        return NULL;
    }
    bv_free_memory(self);
    Py_RETURN_NONE;
}

static PyObject *bv_enter(BytesView *self, PyObject *unused)
{
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *bv_exit(BytesView *self, PyObject *args)
{
    PyObject *r = bv_release(self, NULL);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *bv_is_released(BytesView *self, void *closure)
{
    return PyBool_FromLong(self->released);
}

static PyObject *bv_nbytes(BytesView *self, void *closure)
{
    return PyLong_FromSsize_t(self->length);
}

static PyObject *bv_repr(BytesView *self)
{
    if (self->released)
        return PyUnicode_FromString("BytesView(released)");
    return PyUnicode_FromFormat("BytesView(%zd bytes)", self->length);
}

static PyObject *bv_richcompare(BytesView *self, PyObject *other, int op)
{
    if (op != Py_EQ && op != Py_NE)
        Py_RETURN_NOTIMPLEMENTED;
    Py_buffer theirs;
    if (PyObject_GetBuffer(other, &theirs, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    int equal = !bv_released(self) && theirs.len == self->length &&
                (self->length == 0 || memcmp(theirs.buf, self->data, (size_t)self->length) == 0);
    PyBuffer_Release(&theirs);
    if (PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(op == Py_EQ ? equal : !equal);
}

/* Slicing and indexing behave as on bytes (a copy for slices). */
static PyObject *bv_subscript(BytesView *self, PyObject *key)
{
    if (bv_released(self))
        return NULL;
    PyObject *as_bytes = PyMemoryView_FromObject((PyObject *)self);
    if (!as_bytes)
        return NULL;
    PyObject *item = PyObject_GetItem(as_bytes, key);
    PyObject *result = NULL;
    if (item && PyMemoryView_Check(item))
        result = PyObject_Bytes(item);
    else
        result = item, item = NULL;
    Py_XDECREF(item);
    PyObject *rel = PyObject_CallMethod(as_bytes, "release", NULL);
    Py_XDECREF(rel);
    Py_DECREF(as_bytes);
    return result;
}

static PyMappingMethods bv_as_mapping = {
    (lenfunc)bv_length,
    (binaryfunc)bv_subscript,
    0,
};

static PySequenceMethods bv_as_sequence = {
    (lenfunc)bv_length,
};

/* Pickling (DataLoader worker queues, multiprocessing) sends a copy of the
 * bytes and rebuilds a BytesView with from_bytes on the other side; the
 * native buffer itself never crosses a process boundary. */
static PyObject *bv_reduce(BytesView *self, PyObject *unused)
{
    if (bv_released(self))
        return NULL;
    PyObject *module = PyImport_ImportModule("s3dlio._bytesview");
    if (!module)
        return NULL;
    PyObject *rebuild = PyObject_GetAttrString(module, "from_bytes");
    Py_DECREF(module);
    if (!rebuild)
        return NULL;
    PyObject *copy = PyBytes_FromStringAndSize(self->data, self->length);
    if (!copy) {
        Py_DECREF(rebuild);
        return NULL;
    }
    return Py_BuildValue("(N(N))", rebuild, copy);
}

static PyMethodDef bv_methods[] = {
    {"__reduce__", (PyCFunction)bv_reduce, METH_NOARGS, "Pickle as a copy of the bytes."},
    {"memoryview", (PyCFunction)bv_memoryview, METH_NOARGS,
     "A zero-copy memoryview of the data."},
    {"to_bytes", (PyCFunction)bv_bytes, METH_NOARGS, "A copy of the data as bytes."},
    {"__bytes__", (PyCFunction)bv_bytes, METH_NOARGS, "A copy of the data as bytes."},
    {"release", (PyCFunction)bv_release, METH_NOARGS,
     "Free the memory now.  Raises BufferError while exports are alive."},
    {"__enter__", (PyCFunction)bv_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)bv_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef bv_getset[] = {
    {"released", (getter)bv_is_released, NULL, "True once release() freed the memory.", NULL},
    {"nbytes", (getter)bv_nbytes, NULL, "Length in bytes.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *bv_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyErr_SetString(PyExc_TypeError,
                    "BytesView cannot be created directly; s3dlio.get() returns one");
    return NULL;
}

static PyTypeObject BytesViewType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "s3dlio.BytesView",
    .tp_basicsize = sizeof(BytesView),
    .tp_dealloc = (destructor)bv_dealloc,
    .tp_repr = (reprfunc)bv_repr,
    .tp_as_sequence = &bv_as_sequence,
    .tp_as_mapping = &bv_as_mapping,
    .tp_as_buffer = &bv_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Zero-copy view of bytes returned by s3dlio (buffer protocol, len, ==, slicing).",
    .tp_richcompare = (richcmpfunc)bv_richcompare,
    .tp_methods = bv_methods,
    .tp_getset = bv_getset,
    .tp_new = bv_new,
};

/* wrap_many(allocs_addr, datas_addr, lens_addr, count, free_fn_addr) -> list.
 * Takes ownership of every non-NULL allocation, even if it fails part way
 * (the remainder is freed), so the caller never double-frees. */
static PyObject *wrap_many(PyObject *module, PyObject *args)
{
    unsigned long long allocs_addr, datas_addr, lens_addr, free_addr;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "KKKnK", &allocs_addr, &datas_addr, &lens_addr, &count,
                          &free_addr))
        return NULL;
    void **allocs = (void **)(uintptr_t)allocs_addr;
    char **datas = (char **)(uintptr_t)datas_addr;
    uint64_t *lens = (uint64_t *)(uintptr_t)lens_addr;
    free_fn_t free_fn = (free_fn_t)(uintptr_t)free_addr;
    PyObject *list = PyList_New(count);
    Py_ssize_t i = 0;
    if (!list)
        goto fail;
    for (; i < count; i++) {
        if (lens[i] > (uint64_t)PY_SSIZE_T_MAX) {
            PyErr_SetString(PyExc_OverflowError, "object larger than addressable memory");
            goto fail;
        }
        BytesView *bv = bv_make(allocs[i], datas[i], (Py_ssize_t)lens[i], free_fn);
        if (!bv)
            goto fail;
        allocs[i] = NULL;
        PyList_SET_ITEM(list, i, (PyObject *)bv);
    }
    return list;
fail:
    for (Py_ssize_t j = i; j < count; j++)
        if (allocs[j] && free_fn) {
            free_fn(allocs[j]);
            allocs[j] = NULL;
        }
    Py_XDECREF(list);
    return NULL;
}

/* from_bytes(data) -> BytesView holding a private copy (for backends that
 * produce Python bytes, so every get returns the same type). */
static PyObject *from_bytes(PyObject *module, PyObject *arg)
{
    Py_buffer src;
    if (PyObject_GetBuffer(arg, &src, PyBUF_SIMPLE) < 0)
        return NULL;
    char *copy = PyMem_RawMalloc(src.len ? (size_t)src.len : 1);
    if (!copy) {
        PyBuffer_Release(&src);
        return PyErr_NoMemory();
    }
    memcpy(copy, src.buf, (size_t)src.len);
    BytesView *bv = bv_make(copy, copy, src.len, PyMem_RawFree);
    PyBuffer_Release(&src);
    if (!bv)
        PyMem_RawFree(copy);
    return (PyObject *)bv;
}

/* A view's memory held through another object's buffer export: released
 * with the view (the GIL is held: views are freed by dealloc or release()). */
static void release_held(void *held)
{
    PyBuffer_Release((Py_buffer *)held);
    PyMem_RawFree(held);
}

/* wrap_buffer(obj) -> BytesView sharing obj's writable, contiguous memory
 * without a copy, keeping obj alive while the view lives (for memory that
 * arrives from elsewhere, e.g. a DataLoader batch in shared memory). */
static PyObject *wrap_buffer(PyObject *module, PyObject *arg)
{
    Py_buffer *held = PyMem_RawMalloc(sizeof(*held));
    if (!held)
        return PyErr_NoMemory();
    if (PyObject_GetBuffer(arg, held, PyBUF_SIMPLE | PyBUF_WRITABLE) < 0) {
        PyMem_RawFree(held);
        return NULL;
    }
    BytesView *bv = bv_make(held, held->buf, held->len, release_held);
    if (!bv)
        release_held(held);
    return (PyObject *)bv;
}

static PyMethodDef module_methods[] = {
    {"wrap_many", wrap_many, METH_VARARGS, "Wrap native result buffers as BytesViews."},
    {"wrap_buffer", wrap_buffer, METH_O,
     "A BytesView sharing a writable contiguous buffer's memory (no copy)."},
    {"from_bytes", from_bytes, METH_O, "A BytesView holding a copy of a bytes-like object."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef bytesview_module = {
    PyModuleDef_HEAD_INIT, "s3dlio._bytesview", "Zero-copy result buffers.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__bytesview(void)
{
    if (PyType_Ready(&BytesViewType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&bytesview_module);
    if (!m)
        return NULL;
    Py_INCREF(&BytesViewType);
    if (PyModule_AddObject(m, "BytesView", (PyObject *)&BytesViewType) < 0) {
        Py_DECREF(&BytesViewType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
