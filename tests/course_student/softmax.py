import numpy as np

from layers import fc_forward, fc_backward, relu_forward, relu_backward, softmax_loss


class SoftmaxClassifier(object):
    """
    A fully-connected neural network with softmax loss that uses a modular layer
    design. We assume an input dimension of D, a hidden dimension of H, and
    perform classification over C classes.

    The architecture should be fc - relu - fc - softmax.

    The learnable parameters of the model are stored in the dictionary
    self.params that maps parameter names to numpy arrays.
    """

    def __init__(self, input_dim=28 * 28, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3):
        """
        Initialize a new network.

        Inputs:
        - input_dim: An integer giving the size of the input
        - hidden_dim: An integer giving the size of the hidden layer, None
          if there's no hidden layer.
        - num_classes: An integer giving the number of classes to classify
        - weight_scale: Scalar giving the standard deviation for random
          initialization of the weights.
        """
        self.params = {}
        #######################################################################
        # TODO: Initialize the weights and biases of the net. Weights         #
        # should be initialized from a Gaussian centered at 0.0 with          #
        # standard deviation equal to weight_scale, and biases should be      #
        # initialized to zero.                                                #
        #######################################################################
        self.params['W1'] = weight_scale * np.random.randn(input_dim, hidden_dim)
        self.params['b1'] = np.zeros(hidden_dim)
        self.params['W2'] = weight_scale * np.random.randn(hidden_dim, num_classes)
        self.params['b2'] = np.zeros(num_classes)
        #######################################################################
        #                            END OF YOUR CODE                         #
        #######################################################################

    def loss(self, X, y=None):
        """
        Compute loss and gradient for a minibatch of data.

        Inputs:
        - X: Array of input data of shape (N, D)
        - y: Array of labels, of shape (N,). y[i] gives the label for X[i].

        Returns:
        If y is None, then run a test-time forward pass of the model and return:
        - scores: Array of shape (N, C) giving classification scores, where
          scores[i, c] is the classification score for X[i] and class c.

        If y is not None, then run a training-time forward and backward pass and
        return a tuple of:
        - loss: Scalar value giving the loss
        - grads: Dictionary with the same keys as self.params, mapping parameter
          names to gradients of the loss with respect to those parameters.
        """
        scores = None
        #######################################################################
        # TODO: Implement the forward pass for the network, computing the     #
        # class scores for X and storing them in the scores variable.         #
        #######################################################################
        X = X.reshape(X.shape[0], -1)
        W1, b1 = self.params['W1'], self.params['b1']
        W2, b2 = self.params['W2'], self.params['b2']
        h1, cache1 = fc_forward(X, W1, b1)
        a1, cache_relu = relu_forward(h1)
        scores, cache2 = fc_forward(a1, W2, b2)
        #######################################################################
        #                            END OF YOUR CODE                         #
        #######################################################################

        # If y is None then we are in test mode so just return scores
        if y is None:
            return scores

        loss, grads = 0, {}
        #######################################################################
        # TODO: Implement the backward pass for the network. Store the loss   #
        # in the loss variable and gradients in the grads dictionary.         #
        #######################################################################
        loss, dscores = softmax_loss(scores, y)
        da1, grads['W2'], grads['b2'] = fc_backward(dscores, cache2)
        dh1 = relu_backward(da1, cache_relu)
        dX, grads['W1'], grads['b1'] = fc_backward(dh1, cache1)
        #######################################################################
        #                            END OF YOUR CODE                         #
        #######################################################################
        return loss, grads
