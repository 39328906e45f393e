"""
The assignments a course can hand out, as data: the one manifest the grader
(`autograder.py --assignment ID`) and the release (`autograder.py --release ID`) read.

An assignment names
- its graded tests: the suite they are registered in (grader/checks.py `graded(...,
  suite=...)`) and which of them are public (in the handout, shown to students at once)
  or hidden (grader only, shown after the due date);
- its student files, and in each file the definitions that are student work (stubbed in
  the handout, graded) and those the course provides (shipped whole, never graded or
  charged): a function `fc_forward`, a class `ConvNet` or a method `ConvNet.loss`;
- the support files the handout ships unchanged (they must not import anything the
  handout leaves out) and the notebooks (shipped with their outputs cleared);
- the contract its docstrings promise, in words (shown in the handout's README).

Everything here is plain data, checked by `validate` (tests/test_assignments.py runs it).
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StudentFile:
    path: str                 # e.g. 'layers.py', relative to the handout's root
    student: tuple            # definitions that are student work: 'fc_forward', 'ConvNet.loss'
    provided: tuple = ()      # definitions the course provides in this file (never graded)
    docstring: str = ''       # the handout's module docstring ('' keeps ours)
    imports: tuple = ()       # import lines the handout adds, for what the student will call


@dataclass(frozen=True)
class Assignment:
    id: str
    title: str
    suite: str                # the suite of graded tests (grader/checks.py)
    student_files: tuple      # StudentFile, in the order a student works through them
    support_files: tuple = () # shipped unchanged: files or folders (e.g. 'data')
    notebooks: tuple = ()     # shipped with outputs cleared
    public: tuple = ()        # fnmatch patterns of the public tests' names
    contract: str = ""        # what the handout promises, in words
    hints: str = 'public'     # failure hints (grader/probes.py) for 'all' tests, 'public' ones, 'none'
    modules: tuple = field(default=())   # filled in by __post_init__: student modules

    def __post_init__(self):
        object.__setattr__(self, 'modules', tuple(f.path[:-3] for f in self.student_files))

    def student_file(self, module):
        return next(f for f in self.student_files if f.path == module + '.py')

    def is_public(self, test_name):
        import fnmatch
        return any(fnmatch.fnmatchcase(test_name, p) for p in self.public)


CNN_RNN = Assignment(
    id='cnn-rnn',
    title='Layers, classifiers and image captioning from scratch',
    suite='cnn-rnn',
    student_files=(
        StudentFile('layers.py', student=(
            'fc_forward', 'fc_backward', 'relu_forward', 'relu_backward', 'conv_forward',
            'conv_backward', 'max_pool_forward', 'max_pool_backward', 'softmax_loss'),
            docstring="""\
Feed-forward layers with hand-derived backward passes.

Every forward function returns (out, cache) and every backward function takes
(dout, cache), where dout is the gradient of the loss with respect to out and cache is
what your forward chose to keep. Inputs (dout included) are never modified."""),
        StudentFile('rnn_layers.py',
                    student=('temporal_fc_forward', 'temporal_fc_backward', 'temporal_softmax_loss'),
                    provided=('rnn_step_forward', 'rnn_step_backward', 'rnn_forward',
                              'rnn_backward', 'word_embedding_forward',
                              'word_embedding_backward'),
                    docstring="""\
Layers of recurrent networks. The vanilla RNN and the word embedding are given; the
temporal fully connected layer and the temporal softmax loss are yours.

The recurrent core is time-major (x of shape (T, N, D)); the embedding and the temporal
layers are batch-major ((N, T, ...))."""),
        StudentFile('softmax.py', student=('SoftmaxClassifier.__init__', 'SoftmaxClassifier.loss'),
                    provided=('SoftmaxClassifier',),
                    docstring="Two-layer fully connected classifier: fc - relu - fc - softmax."),
        StudentFile('cnn.py', student=('ConvNet.__init__', 'ConvNet.loss'), provided=('ConvNet',),
                    docstring="Convolutional classifier: conv - relu - 2x2 max pool - fc - relu - "
                              "fc - softmax.",
                    imports=('from layers import conv_backward, conv_forward, max_pool_backward, '
                             'max_pool_forward',)),
        StudentFile('rnn.py', student=('CaptioningRNN.loss', 'CaptioningRNN.sample'),
                    provided=('CaptioningRNN',),
                    docstring="""\
Image captioning with a vanilla RNN: CaptioningRNN.

Its __init__ is given; loss (training, backpropagation through time) and sample (greedy
decoding) are yours, built from the layers of layers.py and rnn_layers.py."""),
    ),
    support_files=('optim.py', 'solver.py', 'checkpoint.py', 'gradient_check.py', 'fileio.py'),
    notebooks=(),
    public=('fc_forward', 'fc_backward', 'relu_*', 'conv_forward', 'max_pool_forward',
            'softmax_loss', 'temporal_fc_forward', 'temporal_softmax_loss',
            'softmax_classifier_init', 'convnet_init', 'captioning_rnn_loss'),
    hints='all',   # hidden tests' output is shown after the due date only: their hints too
    contract="""\
- fc_forward takes x of shape (N, D_in); every forward returns (out, cache) and its
  backward accepts the cache its own forward returned (its layout is yours).
- conv_forward is filtering (cross-correlation, kernel not flipped), stride 1, no
  padding, no bias; max_pool_forward takes pool_param with pool_height, pool_width and
  stride; in max_pool_backward a window's gradient may go to any of its tied maxima.
- softmax_loss and temporal_softmax_loss return (loss, dx), the loss averaged over N
  (temporal: summed over time, averaged over N, masked entries ignored); they must work
  for scores of any size (e.g. +-1000).
- No function modifies its inputs (dout included).
- SoftmaxClassifier, ConvNet: params W1, b1, W2, b2 (ConvNet: W1 (no bias), W2, b2, W3,
  b3), biases zero, weights Gaussian with std weight_scale, dtype as given;
  loss(X) returns the scores (N, C), loss(X, y) returns (loss, grads) with the keys of
  params. ConvNet works for any input_dim (C, H, W), odd sizes included.
- CaptioningRNN: loss(features, captions) -> (loss, grads), <NULL> words masked;
  sample(features, max_length) -> integer array (N, max_length), greedy, column 0 is the
  first generated word (not <START>).""",
)

NORM_ATTENTION = Assignment(
    id='norm-attention',
    title='Normalization layers and attention',
    suite='handgrad',
    student_files=(
        StudentFile('layers.py', docstring="""\
Normalization layers with hand-derived backward passes: batch norm (plain and spatial),
layer norm and group norm, with cs231n assignment 2's names and conventions.

Every forward function returns (out, cache) and every backward function takes
(dout, cache). Train-mode batch norm updates bn_param's running statistics, the one
documented exception to "inputs are never modified".""", student=(
            'batchnorm_forward', 'batchnorm_backward', 'batchnorm_backward_alt',
            'layernorm_forward', 'layernorm_backward', 'spatial_batchnorm_forward',
            'spatial_batchnorm_backward', 'spatial_groupnorm_forward',
            'spatial_groupnorm_backward')),
        StudentFile('attention_layers.py', student=(
            'attention_weights', 'scaled_dot_product_attention_forward',
            'scaled_dot_product_attention_backward', 'multi_head_attention_forward',
            'multi_head_attention_backward'),
            provided=('positional_encoding', 'causal_mask')),
    ),
    support_files=('gradient_check.py',),
    public=('batchnorm_forward_*', 'layernorm_*', 'attention_weights_*',
            'scaled_dot_product_attention_values*'),
    contract="API.md Part 3 (normalization and attention), its error rules included.",
)

ASSIGNMENTS = {a.id: a for a in (CNN_RNN, NORM_ATTENTION)}


class UnknownAssignment(KeyError):
    def __str__(self):
        return f"no assignment {self.args[0]!r} (known: {', '.join(ASSIGNMENTS)})"


def get(assignment_id):
    """The Assignment with this id; UnknownAssignment names the known ones."""
    try:
        return ASSIGNMENTS[assignment_id]
    except KeyError:
        raise UnknownAssignment(assignment_id) from None


def student_work():
    """{(path, definition)} of every assignment's student work: what no handout may hold."""
    return {(f.path, name) for a in ASSIGNMENTS.values() for f in a.student_files
            for name in f.student}
