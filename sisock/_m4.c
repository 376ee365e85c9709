/*
 * The M4 merge of sisock.downsample, one pass in C.
 *
 * numpy computes a bucket's statistics in about ten passes over the data
 * (a reduceat per statistic, then a search for where each extreme was), at
 * some 10 ns per value and pass; a cold panel merges millions of values.
 * One loop per field and bucket does the same work in one pass. The rules
 * are those of the numpy code, which stays as the reference the tests hold
 * this to: NaN is a missing sample; counts and sums add up (samples in four
 * interleaved lanes, as numpy sums long runs in eight: the last bits of a sum
 * may differ);
 * first and last are the first and last present sample (or bucket holding
 * samples); an extreme is the first occurrence of the smallest or largest
 * value, with its own time and value (0.0 and -0.0 compare equal, the first
 * one seen is kept); a bucket without samples has NaN times and values, a
 * count and a sum of 0.
 *
 * Arrays come in through the buffer protocol, C-contiguous float64 (int64
 * for run starts), shapes passed alongside; the Python side allocates the
 * output. No numpy headers: the module builds wherever Python's do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

/* Rows of a statistics array, as sisock.downsample.STATS orders them. */
enum { N, SUM, T_FIRST, FIRST, T_LAST, LAST, T_MIN, MIN, T_MAX, MAX, NSTATS };

static int check(Py_buffer *b, Py_ssize_t items, size_t itemsize, const char *what)
{
    if (b->len != (Py_ssize_t)(items * itemsize)) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", what, b->len,
                     (Py_ssize_t)(items * itemsize));
        return -1;
    }
    return 0;
}

/* Starts must rise from 0 and stay below n, or a run would read outside. */
static int check_starts(const int64_t *starts, Py_ssize_t runs, Py_ssize_t n)
{
    for (Py_ssize_t r = 0; r < runs; r++) {
        if (starts[r] < 0 || starts[r] >= n || (r > 0 && starts[r] <= starts[r - 1]) || (r == 0 && starts[r] != 0)) {
            PyErr_SetString(PyExc_ValueError, "run starts must rise from 0 and stay below the length");
            return -1;
        }
    }
    return 0;
}

typedef struct {
    double n, sum, t_first, first, t_last, last, t_min, min, t_max, max;
} Stats;

/* The sum starts at -0.0, the identity of addition: a run of -0.0 sums to
 * -0.0, as numpy's does. */
static inline void empty(Stats *s)
{
    s->n = 0.0;
    s->sum = -0.0;
    s->t_first = s->first = s->t_last = s->last = NAN;
    s->t_min = s->min = s->t_max = s->max = NAN;
}

static inline void store(double *out, Py_ssize_t stride, Py_ssize_t at, const Stats *s)
{
    out[N * stride + at] = s->n;
    out[SUM * stride + at] = s->sum;
    out[T_FIRST * stride + at] = s->t_first;
    out[FIRST * stride + at] = s->first;
    out[T_LAST * stride + at] = s->t_last;
    out[LAST * stride + at] = s->last;
    out[T_MIN * stride + at] = s->t_min;
    out[MIN * stride + at] = s->min;
    out[T_MAX * stride + at] = s->t_max;
    out[MAX * stride + at] = s->max;
}

/* One run of samples, in two passes that keep no value waiting on the one
 * before it: four lanes of count, sum, min and max (a single running sum
 * would make every addition wait for the last, four cycles each), then the
 * first sample equal to each extreme, which is where it first occurred. */
static inline void bucket_of_samples(const double *t, const double *v, Py_ssize_t lo, Py_ssize_t hi, Stats *s)
{
    double sum[4] = {-0.0, -0.0, -0.0, -0.0}, count[4] = {0, 0, 0, 0};
    double mn[4] = {INFINITY, INFINITY, INFINITY, INFINITY}, mx[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    Py_ssize_t i = lo;
    for (; i + 4 <= hi; i += 4) {
        for (int k = 0; k < 4; k++) {
            double x = v[i + k];
            int present = x == x;
            count[k] += present;
            sum[k] += present ? x : -0.0;
            mn[k] = x < mn[k] ? x : mn[k];
            mx[k] = x > mx[k] ? x : mx[k];
        }
    }
    for (; i < hi; i++) {
        double x = v[i];
        int present = x == x;
        count[0] += present;
        sum[0] += present ? x : -0.0;
        mn[0] = x < mn[0] ? x : mn[0];
        mx[0] = x > mx[0] ? x : mx[0];
    }
    double n = (count[0] + count[1]) + (count[2] + count[3]);
    if (n == 0.0) {
        s->sum = 0.0;
        return;
    }
    double lowest = mn[0], highest = mx[0];
    for (int k = 1; k < 4; k++) {
        lowest = mn[k] < lowest ? mn[k] : lowest;
        highest = mx[k] > highest ? mx[k] : highest;
    }
    s->n = n;
    s->sum = (sum[0] + sum[1]) + (sum[2] + sum[3]);
    Py_ssize_t a = lo, b = hi - 1;
    while (isnan(v[a]))
        a++;
    while (isnan(v[b]))
        b--;
    s->t_first = t[a];
    s->first = v[a];
    s->t_last = t[b];
    s->last = v[b];
    for (i = a; v[i] != lowest; i++)
        ;
    s->t_min = t[i];
    s->min = v[i];
    for (i = a; v[i] != highest; i++)
        ;
    s->t_max = t[i];
    s->max = v[i];
}

/* merge_samples(t, rows, starts, out, n, runs): the samples of each of
 * ``rows`` (a sequence of fields' values, n each, at the sorted times ``t``)
 * merged into the runs beginning at ``starts``; ``out`` is NSTATS x
 * len(rows) x runs. Rows come one by one: a block's fields are separate
 * arrays, and stacking them first would copy every sample. */
static PyObject *merge_samples(PyObject *self, PyObject *args)
{
    Py_buffer bt, bs, bo;
    PyObject *rows;
    Py_ssize_t n, runs;
    if (!PyArg_ParseTuple(args, "y*Oy*w*nn", &bt, &rows, &bs, &bo, &n, &runs))
        return NULL;
    PyObject *result = NULL, *seq = PySequence_Fast(rows, "rows must be a sequence of arrays");
    Py_buffer *bv = NULL;
    Py_ssize_t fields = 0, held = 0;
    if (seq == NULL)
        goto done;
    fields = PySequence_Fast_GET_SIZE(seq);
    bv = PyMem_Calloc(fields ? fields : 1, sizeof(Py_buffer));
    if (bv == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; held < fields; held++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, held), &bv[held], PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        if (check(&bv[held], n, sizeof(double), "row"))
            goto done;
    }
    if (check(&bt, n, sizeof(double), "t") || check(&bs, runs, sizeof(int64_t), "starts")
        || check(&bo, NSTATS * fields * runs, sizeof(double), "out") || check_starts(bs.buf, runs, n))
        goto done;
    const double *t = bt.buf;
    const int64_t *starts = bs.buf;
    double *out = bo.buf;
    Py_ssize_t stride = fields * runs;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t f = 0; f < fields; f++) {
        const double *v = bv[f].buf;
        for (Py_ssize_t r = 0; r < runs; r++) {
            Py_ssize_t lo = starts[r], hi = r + 1 < runs ? starts[r + 1] : n;
            Stats s;
            empty(&s);
            bucket_of_samples(t, v, lo, hi, &s);
            store(out, stride, f * runs + r, &s);
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    for (Py_ssize_t k = 0; k < held; k++)
        PyBuffer_Release(&bv[k]);
    PyMem_Free(bv);
    Py_XDECREF(seq);
    PyBuffer_Release(&bt);
    PyBuffer_Release(&bs);
    PyBuffer_Release(&bo);
    return result;
}

/* merge(stats, starts, out, fields, buckets, runs): buckets' statistics
 * (NSTATS x fields x buckets, in time order) merged into the runs beginning
 * at ``starts``; ``out`` is NSTATS x fields x runs. */
static PyObject *merge(PyObject *self, PyObject *args)
{
    Py_buffer bi, bs, bo;
    Py_ssize_t fields, n, runs;
    if (!PyArg_ParseTuple(args, "y*y*w*nnn", &bi, &bs, &bo, &fields, &n, &runs))
        return NULL;
    PyObject *result = NULL;
    if (check(&bi, NSTATS * fields * n, sizeof(double), "stats") || check(&bs, runs, sizeof(int64_t), "starts")
        || check(&bo, NSTATS * fields * runs, sizeof(double), "out") || check_starts(bs.buf, runs, n))
        goto done;
    const double *in = bi.buf;
    const int64_t *starts = bs.buf;
    double *out = bo.buf;
    Py_ssize_t in_stride = fields * n, out_stride = fields * runs;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t f = 0; f < fields; f++) {
        const double *row[NSTATS];
        for (int k = 0; k < NSTATS; k++)
            row[k] = in + k * in_stride + f * n;
        for (Py_ssize_t r = 0; r < runs; r++) {
            Py_ssize_t lo = starts[r], hi = r + 1 < runs ? starts[r + 1] : n;
            Stats s;
            empty(&s);
            int has_min = 0, has_max = 0;
            for (Py_ssize_t i = lo; i < hi; i++) {
                s.sum += row[SUM][i];
                double count = row[N][i];
                s.n += count;
                if (count > 0) {
                    if (isnan(s.t_first)) {
                        s.t_first = row[T_FIRST][i];
                        s.first = row[FIRST][i];
                    }
                    s.t_last = row[T_LAST][i];
                    s.last = row[LAST][i];
                }
                double lo_v = row[MIN][i], hi_v = row[MAX][i];
                if (!isnan(lo_v) && (!has_min || lo_v < s.min)) {
                    s.min = lo_v;
                    s.t_min = row[T_MIN][i];
                    has_min = 1;
                }
                if (!isnan(hi_v) && (!has_max || hi_v > s.max)) {
                    s.max = hi_v;
                    s.t_max = row[T_MAX][i];
                    has_max = 1;
                }
            }
            if (s.n == 0.0)
                s.t_min = s.t_max = NAN;
            store(out, out_stride, f * runs + r, &s);
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&bi);
    PyBuffer_Release(&bs);
    PyBuffer_Release(&bo);
    return result;
}

static PyMethodDef methods[] = {
    {"merge_samples", merge_samples, METH_VARARGS, "Samples merged into runs of buckets (M4, counts, sums)."},
    {"merge", merge, METH_VARARGS, "Buckets' statistics merged into runs of buckets."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_m4", "The M4 merge in one pass.", -1, methods};

PyMODINIT_FUNC PyInit__m4(void)
{
    return PyModule_Create(&module);
}
