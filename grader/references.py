"""
The grader's references: every graded layer written as the plain loops of its definition
(API.md), slow and obvious. Expected values are computed from these in the grader's own
process; expected gradients are numeric gradients of these forwards (grader/checks.py),
so a submission is never compared with itself. Tests and benchmarks import them too:
there is one copy of each definition.

Shapes follow API.md: conv and pool inputs (N, C, H, W), recurrent inputs time-major
(T, N, D), embeddings and the temporal layers batch-major (N, T, ...).
"""
import numpy as np

# ------------------------------------------------------------------- dense and pointwise

def fc(x, w, b):
    """out[n] = x[n] flattened @ w + b."""
    return np.array([np.ravel(x_n) @ w + b for x_n in x]).reshape(len(x), w.shape[1])


def relu(x):
    return np.where(x > 0, x, 0.0)


def flatten(x):
    return np.reshape(x, (len(x), -1))


# ------------------------------------------------------------------ convolution, pooling

def filter2d(a, k):
    """
    Filtering (cross-correlation), valid part: out[i, j] = sum_{p, q} k[p, q] a[i+p, j+q],
    summed here over the kernel's offsets (p, q), each adding k[p, q] times a shifted a.
    """
    kh, kw = k.shape
    oh, ow = a.shape[0] - kh + 1, a.shape[1] - kw + 1
    out = np.zeros((oh, ow))
    for p, q in np.ndindex(kh, kw):
        out += k[p, q] * a[p:p + oh, q:q + ow]
    return out


def full_convolution(a, k):
    """Full 2-D convolution: zero-pad a by kh-1 / kw-1 on every side, filter with the flipped k."""
    kh, kw = k.shape
    return filter2d(np.pad(a, ((kh - 1, kh - 1), (kw - 1, kw - 1))), k[::-1, ::-1])


def conv(x, w, b=None, stride=1, pad=0):
    """
    Y[n, f, i, j] = sum_{c, p, q} W[f, c, p, q] X[n, c, s i + p, s j + q] (+ b[f]) on the
    zero-padded X: filtering summed over channels, every stride-th position.
    """
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    (N, C, H, W), (F, _, HH, WW) = x.shape, w.shape
    y = np.zeros((N, F, H - HH + 1, W - WW + 1))
    for c, p, q in np.ndindex(C, HH, WW):
        y += w[None, :, c, p, q, None, None] * x[:, None, c, p:p + H - HH + 1, q:q + W - WW + 1]
    y = y[:, :, ::stride, ::stride]
    return y if b is None else y + b[None, :, None, None]


def conv_backward(x, w, dy):
    """The homework's theorem: dX[n, c] = sum_f W[f, c] *full dY[n, f], dW[f, c] = sum_n X[n, c] *filt dY[n, f]."""
    (N, C), F = x.shape[:2], w.shape[0]
    dx = np.array([[sum(full_convolution(dy[n, f], w[f, c]) for f in range(F)) for c in range(C)]
                   for n in range(N)]).reshape(x.shape)
    dw = np.array([[sum(filter2d(x[n, c], dy[n, f]) for n in range(N)) for c in range(C)]
                   for f in range(F)]).reshape(w.shape)
    return dx, dw


def max_pool(x, pool_param):
    """out[n, c, i, j] = max of the window of x[n, c] at rows s i .. s i + ph, columns s j .. s j + pw."""
    ph, pw, s = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
    N, C, H, W = x.shape
    out = np.zeros((N, C, 1 + (H - ph) // s, 1 + (W - pw) // s))
    for i, j in np.ndindex(*out.shape[2:]):
        out[:, :, i, j] = x[:, :, i * s:i * s + ph, j * s:j * s + pw].max(axis=(2, 3))
    return out


def max_pool_backward(x, pool_param, dout):
    """Each window's gradient to its first max in row-major order; overlaps accumulate."""
    ph, pw, s = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
    dx = np.zeros(x.shape)
    for n, c, i, j in np.ndindex(*dout.shape):
        window = x[n, c, i * s:i * s + ph, j * s:j * s + pw]
        a, b = np.unravel_index(np.argmax(window), window.shape)
        dx[n, c, i * s + a, j * s + b] += dout[n, c, i, j]
    return dx


# ----------------------------------------------------------------------------- losses

def log_softmax(x):
    """Row-wise log(softmax(x)), the max subtracted first so large scores do not overflow."""
    return np.array([row - row.max() - np.log(np.sum(np.exp(row - row.max()))) for row in x])


def nll_loss(log_probs, y):
    """-(1/N) sum_n log_probs[n, y[n]]."""
    return -sum(log_probs[n, y[n]] for n in range(len(y))) / len(y)


def softmax_loss(x, y):
    return nll_loss(log_softmax(x), y)


def temporal_softmax_loss(x, y, mask):
    """sum over n and unmasked t of -log softmax(x[n, t])[y[n, t]], divided by N."""
    N, T, _ = x.shape
    return -sum(log_softmax(x[n, t:t + 1])[0, y[n, t]]
                for n in range(N) for t in range(T) if mask[n, t]) / N


# ---------------------------------------------------------------------------- recurrent

def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def rnn_step(x, prev_h, Wx, Wh, b):
    return np.tanh(x @ Wx + prev_h @ Wh + b)


def rnn(x, h0, Wx, Wh, b):
    """Time-major: h[t] = rnn_step(x[t], h[t-1]), h[-1] = h0."""
    h, hs = h0, []
    for x_t in x:
        h = rnn_step(x_t, h, Wx, Wh, b)
        hs.append(h)
    return np.array(hs)


def lstm_step(x, prev_h, prev_c, Wx, Wh, b):
    """a = x Wx + prev_h Wh + b; gates i, f, o, g = its four blocks of H columns, in order."""
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    return o * np.tanh(next_c), next_c


def lstm(x, h0, Wx, Wh, b):
    """Time-major; c starts at zero."""
    h, c, hs = h0, np.zeros_like(h0), []
    for x_t in x:
        h, c = lstm_step(x_t, h, c, Wx, Wh, b)
        hs.append(h)
    return np.array(hs)


def word_embedding(x, W):
    """out[n, t] = W[x[n, t]]."""
    return np.array([[W[i] for i in row] for row in x]).reshape(*np.shape(x), W.shape[1])


def temporal_fc(x, w, b):
    """out[n, t] = x[n, t] @ w + b."""
    return np.array([[x_nt @ w + b for x_nt in x_n] for x_n in x]).reshape(*x.shape[:2], w.shape[1])


# ------------------------------------------------------------------------------ models

def softmax_classifier(params, X, y=None):
    """scores = fc(relu(fc(X, W1, b1)), W2, b2); with y, the softmax loss of the scores."""
    p = params
    scores = fc(relu(fc(X, p['W1'], p['b1'])), p['W2'], p['b2'])
    return scores if y is None else softmax_loss(scores, y)


CONVNET_POOL = {'pool_height': 2, 'pool_width': 2, 'stride': 2}


def convnet(params, X, y=None):
    """scores = fc(relu(fc(max_pool(relu(conv(X, W1))), W2, b2)), W3, b3); with y, the loss."""
    p = params
    hidden = max_pool(relu(conv(X, p['W1'])), CONVNET_POOL)
    scores = fc(relu(fc(hidden, p['W2'], p['b2'])), p['W3'], p['b3'])
    return scores if y is None else softmax_loss(scores, y)


def captioning_rnn_loss(params, features, captions, null):
    """
    The vanilla-RNN captioning loss: h0 = fc(features), words of captions[:, :-1] embedded
    and run through the RNN, scores = temporal fc of the hidden states, loss = temporal
    softmax loss against captions[:, 1:] with <NULL> (index `null`) masked.
    """
    p = params
    captions_in, captions_out = captions[:, :-1], captions[:, 1:]
    h0 = fc(features, p['W_proj'], p['b_proj'])
    x = word_embedding(captions_in, p['W_embed'])                 # (N, T, W)
    h = rnn(x.transpose(1, 0, 2), h0, p['Wx'], p['Wh'], p['b'])   # (T, N, H)
    scores = temporal_fc(h.transpose(1, 0, 2), p['W_vocab'], p['b_vocab'])
    return temporal_softmax_loss(scores, captions_out, captions_out != null)


def captioning_rnn_sample(params, features, max_length, start, null, feed_back=True):
    """
    Greedy decoding from <START> (index `start`): column t is the t-th generated word.
    feed_back=False gives what a sampler that never feeds the chosen word back (every
    step reads <START>) produces: the grader's probes name that mistake.
    """
    p = params
    N = len(features)
    captions = np.full((N, max_length), null, dtype=np.int64)
    h, words = fc(features, p['W_proj'], p['b_proj']), np.full(N, start)
    for t in range(max_length):
        h = rnn_step(p['W_embed'][words], h, p['Wx'], p['Wh'], p['b'])
        captions[:, t] = np.argmax(h @ p['W_vocab'] + p['b_vocab'], axis=1)
        words = captions[:, t] if feed_back else words
    return captions


# --------------------------------------------------------------------------- attention

def attention_step(h, A, A_proj, W_h, v):
    """
    e[n, i] = v . tanh(h[n] W_h + A_proj[n, i]);  alpha[n] = softmax(e[n]);
    context[n] = alpha[n] A[n].
    """
    N, L, D = A.shape
    context, alpha = np.zeros((N, D)), np.zeros((N, L))
    for n in range(N):
        e = np.array([v @ np.tanh(h[n] @ W_h + A_proj[n, i]) for i in range(L)])
        alpha[n] = np.exp(e - e.max()) / np.sum(np.exp(e - e.max()))
        context[n] = alpha[n] @ A[n]
    return context, alpha


def attention(h, A, W_h, W_a, v, b=None):
    """attention_step with A_proj[n, i] = A[n, i] W_a + b."""
    A_proj = A @ W_a + (0 if b is None else b)
    return attention_step(h, A, A_proj, W_h, v)


# ------------------------------------------------------------------------ normalization

def standardize(values, eps):
    """(values - mean) / sqrt(biased variance + eps), over all of values."""
    mean = sum(values.ravel()) / values.size
    var = sum((values.ravel() - mean) ** 2) / values.size
    return (values - mean) / np.sqrt(var + eps)


def batchnorm(x, gamma, beta, bn_param):
    """Column d: standardized with its batch statistics (train) or the running ones (test)."""
    eps = bn_param.get('eps', 1e-5)
    N, D = x.shape
    out = np.zeros((N, D))
    for d in range(D):
        if bn_param['mode'] == 'train':
            xhat = standardize(x[:, d], eps)
        else:
            mean = bn_param.get('running_mean', np.zeros(D))[d]
            var = bn_param.get('running_var', np.zeros(D))[d]
            xhat = (x[:, d] - mean) / np.sqrt(var + eps)
        out[:, d] = gamma[d] * xhat + beta[d]
    return out


def batchnorm_running(x, bn_param):
    """The running statistics after one train-mode call: momentum * old + (1 - momentum) * batch."""
    momentum, (N, D) = bn_param.get('momentum', 0.9), x.shape
    mean = np.array([sum(x[:, d]) / N for d in range(D)])
    var = np.array([sum((x[:, d] - mean[d]) ** 2) / N for d in range(D)])
    return {'running_mean': momentum * bn_param.get('running_mean', np.zeros(D)) + (1 - momentum) * mean,
            'running_var': momentum * bn_param.get('running_var', np.zeros(D)) + (1 - momentum) * var}


def layernorm(x, gamma, beta, ln_param):
    """Row n standardized over its own features, then gamma * . + beta."""
    return np.array([gamma * standardize(row, ln_param.get('eps', 1e-5)) + beta for row in x])


def spatial_batchnorm(x, gamma, beta, bn_param):
    """Channel c standardized over all of x[:, c] (batch and pixels)."""
    return batchnorm(x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]), gamma, beta,
                     bn_param).reshape(x.shape[0], x.shape[2], x.shape[3], x.shape[1]).transpose(0, 3, 1, 2)


def spatial_batchnorm_running(x, bn_param):
    return batchnorm_running(x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]), bn_param)


def spatial_groupnorm(x, gamma, beta, G, gn_param):
    """Sample n, group g (channels g C/G .. (g+1) C/G) standardized over its channels and pixels."""
    N, C = x.shape[:2]
    size = C // G
    out = np.zeros(x.shape)
    for n, g in np.ndindex(N, G):
        channels = slice(g * size, (g + 1) * size)
        out[n, channels] = standardize(x[n, channels], gn_param.get('eps', 1e-5))
    return gamma * out + beta


# ------------------------------------------------------------ dot-product attention

def attention_weights(q, k, mask=None):
    """P[..., t, s] = softmax over the allowed keys s of q[..., t] . k[..., s] / sqrt(d); 0 elsewhere."""
    shape = q.shape[:-1] + k.shape[-2:-1]
    allowed = np.ones(shape, bool) if mask is None else np.broadcast_to(mask, shape)
    P = np.zeros(shape)
    for lead in np.ndindex(*shape[:-2]):          # each (batch, head, ...) separately
        scores = q[lead] @ k[lead].T / np.sqrt(q.shape[-1])
        for t in range(shape[-2]):
            keys = allowed[lead][t]
            e = np.exp(scores[t, keys] - scores[t, keys].max())
            P[lead][t, keys] = e / e.sum()
    return P


def scaled_dot_product_attention(q, k, v, mask=None):
    """out[..., t] = sum_s P[..., t, s] v[..., s]."""
    P = attention_weights(q, k, mask)
    out = np.zeros(q.shape[:-1] + v.shape[-1:])
    for lead in np.ndindex(*P.shape[:-2]):
        out[lead] = P[lead] @ v[lead]
    return out


def multi_head_attention(query, key, value, W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o,
                         num_heads, mask=None):
    """Head h: attention of columns h d .. (h+1) d of the projections; heads concatenated, then W_o."""
    N, T, E = query.shape
    d = E // num_heads
    mask = None if mask is None else np.broadcast_to(mask, (N, num_heads, T, key.shape[1]))
    heads = []
    for h in range(num_heads):
        columns = slice(h * d, (h + 1) * d)
        Q = query @ W_q[:, columns] + b_q[columns]
        K = key @ W_k[:, columns] + b_k[columns]
        V = value @ W_v[:, columns] + b_v[columns]
        heads.append(scaled_dot_product_attention(Q, K, V, None if mask is None else mask[:, h]))
    return np.concatenate(heads, axis=-1) @ W_o + b_o


def positional_encoding(T, E):
    """PE[t, 2i] = sin(t / 10000^(2i/E)), PE[t, 2i+1] = cos(t / 10000^(2i/E))."""
    PE = np.zeros((T, E))
    for t, i in np.ndindex(T, E // 2):
        PE[t, 2 * i] = np.sin(t / 10000 ** (2 * i / E))
        PE[t, 2 * i + 1] = np.cos(t / 10000 ** (2 * i / E))
    return PE
