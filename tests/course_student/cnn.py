import numpy as np

from layers import (conv_forward, conv_backward, relu_forward, relu_backward,
                    max_pool_forward, max_pool_backward, fc_forward, fc_backward,
                    softmax_loss)


class ConvNet(object):
    """
    A convolutional network with the following architecture:

    conv - relu - 2x2 max pool - fc - relu - fc - softmax

    The network operates on minibatches of data that have shape (N, C, H, W)
    consisting of N images, each with height H and width W and with C input
    channels.
    """

    def __init__(self, input_dim=(1, 28, 28), num_filters=32, filter_size=7,
                 hidden_dim=100, num_classes=10, weight_scale=1e-3,
                 dtype=np.float32):
        """
        Initialize a new network.

        Inputs:
        - input_dim: Tuple (C, H, W) giving size of input data
        - num_filters: Number of filters to use in the convolutional layer
        - filter_size: Size of filters to use in the convolutional layer
        - hidden_dim: Number of units to use in the fully-connected hidden layer
        - num_classes: Number of scores to produce from the final fc layer.
        - weight_scale: Scalar giving standard deviation for random initialization
          of weights.
        - dtype: numpy datatype to use for computation.
        """
        self.params = {}
        self.dtype = dtype
        ############################################################################
        # TODO: Initialize weights and biases for the three-layer convolutional    #
        # network. The convolutional layer has no bias.                            #
        ############################################################################
        C, H, W = input_dim
        H_conv = H - filter_size + 1
        W_conv = W - filter_size + 1
        H_pool = (H_conv - 2) // 2 + 1
        W_pool = (W_conv - 2) // 2 + 1
        self.params['W1'] = weight_scale * np.random.randn(num_filters, C, filter_size, filter_size)
        self.params['W2'] = weight_scale * np.random.randn(num_filters * H_pool * W_pool, hidden_dim)
        self.params['b2'] = np.zeros(hidden_dim)
        self.params['W3'] = weight_scale * np.random.randn(hidden_dim, num_classes)
        self.params['b3'] = np.zeros(num_classes)
        ############################################################################
        #                             END OF YOUR CODE                             #
        ############################################################################

        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def loss(self, X, y=None):
        """
        Evaluate loss and gradient for the three-layer convolutional network.

        Input / output: Same API as SoftmaxClassifier.
        """
        W1 = self.params['W1']
        W2, b2 = self.params['W2'], self.params['b2']
        W3, b3 = self.params['W3'], self.params['b3']

        # pass pool_param to the forward pass for the max-pooling layer
        pool_param = {'pool_height': 2, 'pool_width': 2, 'stride': 2}

        scores = None
        ############################################################################
        # TODO: Implement the forward pass for the three-layer convolutional net,  #
        # computing the class scores for X and storing them in the scores          #
        # variable.                                                                #
        ############################################################################
        conv_out, conv_cache = conv_forward(X, W1)
        relu1_out, relu1_cache = relu_forward(conv_out)
        pool_out, pool_cache = max_pool_forward(relu1_out, pool_param)
        N = X.shape[0]
        pool_flat = pool_out.reshape(N, -1)
        fc1_out, fc1_cache = fc_forward(pool_flat, W2, b2)
        relu2_out, relu2_cache = relu_forward(fc1_out)
        scores, fc2_cache = fc_forward(relu2_out, W3, b3)
        ############################################################################
        #                             END OF YOUR CODE                             #
        ############################################################################

        if y is None:
            return scores

        loss, grads = 0, {}
        ############################################################################
        # TODO: Implement the backward pass for the three-layer convolutional net, #
        # storing the loss and gradients in the loss and grads variables.          #
        ############################################################################
        loss, dscores = softmax_loss(scores, y)
        drelu2, grads['W3'], grads['b3'] = fc_backward(dscores, fc2_cache)
        dfc1 = relu_backward(drelu2, relu2_cache)
        dpool_flat, grads['W2'], grads['b2'] = fc_backward(dfc1, fc1_cache)
        dpool = dpool_flat.reshape(pool_out.shape)
        drelu1 = max_pool_backward(dpool, pool_cache)
        dconv = relu_backward(drelu1, relu1_cache)
        dX, grads['W1'] = conv_backward(dconv, conv_cache)
        ############################################################################
        #                             END OF YOUR CODE                             #
        ############################################################################

        return loss, grads
