"""PyTorch modules trained by flatgen's classifiers.

The modules are plain :class:`torch.nn.Sequential` stacks so that the landscape
tools can walk their layers: every dense unit's incoming-weight row and every
convolution's output channel is one *filter* for filter normalization.
"""

from torch import nn

__all__ = ["MLP", "SmallCNN", "ACTIVATIONS", "count_parameters"]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "logistic": nn.Sigmoid,
}


class MLP(nn.Sequential):
    """Fully connected network that returns one logit per class.

    Parameters
    ----------
    n_features : int
        Number of input features.
    n_classes : int
        Number of output logits.
    hidden_layer_sizes : tuple of int, default=(17, 18, 32, 32, 31, 9)
        Width of each hidden layer; the default is the paper's swiss-roll
        network (3,370 parameters for two inputs and two classes).
    activation : {'relu', 'tanh', 'gelu', 'logistic'}, default='relu'
        Nonlinearity after every hidden layer.

    Examples
    --------
    >>> import torch
    >>> from flatgen.networks import MLP
    >>> net = MLP(2, 2)
    >>> sum(p.numel() for p in net.parameters())
    3370
    >>> net(torch.zeros(5, 2)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        n_features,
        n_classes,
        hidden_layer_sizes=(17, 18, 32, 32, 31, 9),
        activation="relu",
    ):
        layers = []
        width_in = n_features
        for width in hidden_layer_sizes:
            layers += [nn.Linear(width_in, width), ACTIVATIONS[activation]()]
            width_in = width
        layers.append(nn.Linear(width_in, n_classes))
        super().__init__(*layers)


class SmallCNN(nn.Sequential):
    """Small convolutional network for images of any size.

    Each convolutional block is a 3x3 convolution (padding 1), the
    nonlinearity and a 2x2 max-pool along every side still at least two
    pixels long; an adaptive average pool then caps the feature map at 4x4
    before the dense head. It trains on 8x8 digits on a CPU in seconds and
    accepts 32x32x3 SVHN images unchanged.

    Parameters
    ----------
    image_shape : tuple of int
        Shape ``(channels, height, width)`` of one input image.
    n_classes : int
        Number of output logits.
    conv_channels : tuple of int, default=(16, 32)
        Output channels of each convolutional block.
    hidden_layer_sizes : tuple of int, default=(64,)
        Widths of the dense hidden layers after the convolutions.
    activation : {'relu', 'tanh', 'gelu', 'logistic'}, default='relu'
        Nonlinearity used throughout.

    Examples
    --------
    >>> import torch
    >>> from flatgen.networks import SmallCNN
    >>> net = SmallCNN((1, 8, 8), 10)
    >>> net(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    """

    def __init__(
        self,
        image_shape,
        n_classes,
        conv_channels=(16, 32),
        hidden_layer_sizes=(64,),
        activation="relu",
    ):
        channels, height, width = image_shape
        layers = []
        for out_channels in conv_channels:
            layers += [
                nn.Conv2d(channels, out_channels, kernel_size=3, padding=1),
                ACTIVATIONS[activation](),
            ]
            pool = (2 if height >= 2 else 1, 2 if width >= 2 else 1)
            if pool != (1, 1):
                layers.append(nn.MaxPool2d(pool))
                height, width = height // pool[0], width // pool[1]
            channels = out_channels
        height, width = min(height, 4), min(width, 4)
        layers += [nn.AdaptiveAvgPool2d((height, width)), nn.Flatten()]
        width_in = channels * height * width
        for hidden in hidden_layer_sizes:
            layers += [nn.Linear(width_in, hidden), ACTIVATIONS[activation]()]
            width_in = hidden
        layers.append(nn.Linear(width_in, n_classes))
        super().__init__(*layers)


def count_parameters(module):
    """Return the number of trainable parameters of ``module``.

    Parameters
    ----------
    module : torch.nn.Module
        The network.

    Returns
    -------
    n_parameters : int
        Total number of elements of parameters with ``requires_grad``.
    """
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))
