"""PyTorch modules trained by flatgen's classifiers.

The modules are plain :class:`torch.nn.Sequential` stacks so that the landscape
tools can walk their layers: every dense unit's incoming-weight row and every
convolution's output channel is one *filter* for filter normalization.
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MLP", "SmallCNN", "MaxPool2d", "ACTIVATIONS", "count_parameters"]

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


class MaxPool2d(nn.MaxPool2d):
    """:class:`torch.nn.MaxPool2d` with faster paths on the CPU.

    On a CPU, for a pool whose stride is its kernel (no padding, dilation or
    ceil mode):

    - without gradients it takes the elementwise maximum of the kernel's
      strided slices: the same values bit for bit (a maximum does not depend
      on the order it is taken in), about 10x faster than torch's
      channels-first kernel on SmallCNN's small feature maps (256 x 16 x 8 x
      8 on one core: 0.16 ms instead of 1.6), and it works under
      ``torch.func.vmap``;
    - with gradients it pools by torch's channels-last kernel, which picks
      the same values and indices (each window scanned alike: the first
      maximum, or the last NaN), and differentiates by torch's own backward
      kernel on those indices: gradients, double backward (Hessian-vector
      products) and forward-mode derivatives are torch's bit for bit, ties
      included, with the forward pass about 3x faster (1,600 x 8 x 8 x 8 on
      one core: 1.6 ms instead of 4.4, the layout change included).

    Under ``torch.func.vmap`` alone (a batched network's gradients, as the
    learning coefficient's chains take them) the same channels-last path
    pools the vmapped images as one batch, the numbers again torch's bit
    for bit (the chains' gradients of a digits CNN about 1.3x faster).
    Under the other ``torch.func`` transforms with gradients, on other
    devices and for any other configuration it is
    :class:`torch.nn.MaxPool2d` itself.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, return_indices, ceil_mode
        As for :class:`torch.nn.MaxPool2d`.

    Examples
    --------
    >>> import torch
    >>> from flatgen.networks import MaxPool2d
    >>> x = torch.randn(2, 3, 8, 8)
    >>> with torch.no_grad():
    ...     torch.equal(MaxPool2d(2)(x), torch.nn.MaxPool2d(2)(x))
    True
    """

    def forward(self, x):
        """Max-pool a batch of images.

        Parameters
        ----------
        x : torch.Tensor of shape (..., height, width)
            Images (or feature maps), channels before the last two axes.

        Returns
        -------
        pooled : torch.Tensor of shape (..., height // kh, width // kw)
            Maximum over each ``(kh, kw)`` window.
        """
        kernel = strided_pool_kernel(self)
        if x.device.type != "cpu" or kernel is None:
            return super().forward(x)
        if not torch.is_grad_enabled():
            return strided_max(x, kernel, height_dim=-2).contiguous()
        if x.ndim in (3, 4) and _plain_or_vmapped(x):
            return _channels_last_max_pool(x, kernel)
        return super().forward(x)


def _plain_or_vmapped(x):
    """Whether ``x`` is a plain tensor or one batched by ``vmap`` alone.

    Such a tensor reaches the channels-last pool (under ``vmap`` through its
    batching rule: the chains' images pooled as one batch, as a batched
    network's gradients need); under the other ``torch.func`` transforms the
    pool stays torch's.
    """
    functorch = torch._C._functorch
    while functorch.is_batchedtensor(x):
        x = functorch.get_unwrapped(x)
    return not functorch.is_functorch_wrapped_tensor(x)


class _ChannelsLastMaxPool(torch.autograd.Function):
    """Max-pool by torch's channels-last kernel, differentiated as by torch's.

    The forward pass returns the pooled values and, per window, the flat
    index (within the input's height x width plane) that both of torch's
    CPU kernels return. The backward pass is
    ``max_pool2d_with_indices_backward`` on the input in its own layout,
    differentiable as in torch (double backward); the forward-mode
    derivative gathers the tangent at the indices.
    """

    @staticmethod
    def forward(x, kernel):
        # torch's channels-last kernel: the same values and indices (it
        # scans each window as the channels-first one does), about 3x
        # faster on small maps, the layout change included.
        batched = x if x.ndim == 4 else x.unsqueeze(0)
        values, indices = F.max_pool2d(
            batched.contiguous(memory_format=torch.channels_last),
            kernel,
            return_indices=True,
        )
        if x.ndim == 3:
            values, indices = values[0], indices[0]
        return values.contiguous(), indices.contiguous()

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, kernel = inputs
        _, indices = output
        ctx.kernel = kernel
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(x, indices)
        ctx.save_for_forward(indices)

    @staticmethod
    def backward(ctx, grad, _):
        x, indices = ctx.saved_tensors
        kernel = list(ctx.kernel)
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
            grad, x, kernel, kernel, [0, 0], [1, 1], False, indices
        )
        return grad_x, None

    @staticmethod
    def vmap(info, in_dims, x, kernel):
        # The vmapped axis joins the images: one 4-D batch for the kernel.
        x = x.movedim(in_dims[0], 0)
        size = x.shape[0]
        batch = x.reshape(-1, *x.shape[-3:])
        values, indices = _ChannelsLastMaxPool.apply(batch, kernel)
        shape = (size, *x.shape[1:-2], *values.shape[-2:])
        return (values.reshape(shape), indices.reshape(shape)), (0, 0)

    @staticmethod
    def jvp(ctx, tangent, _):
        (indices,) = ctx.saved_tensors
        flat = tangent.flatten(-2)
        picked = flat.gather(-1, indices.flatten(-2)).view(indices.shape)
        return picked, None


def _channels_last_max_pool(x, kernel):
    """Pooled values of ``x`` by :class:`_ChannelsLastMaxPool`."""
    values, _ = _ChannelsLastMaxPool.apply(x, kernel)
    return values


def strided_pool_kernel(pool):
    """``(kh, kw)`` of a max-pool whose stride is its kernel, else None.

    Such a pool (no padding, dilation, ceil mode or returned indices) is a
    maximum over the kernel's strided slices: :func:`strided_max`.
    """
    kernel = _pair(pool.kernel_size)
    plain = (
        _pair(pool.stride or pool.kernel_size) == kernel
        and _pair(pool.padding) == (0, 0)
        and _pair(pool.dilation) == (1, 1)
        and not pool.ceil_mode
        and not pool.return_indices
    )
    return kernel if plain else None


def _pair(value):
    """``value`` as a pair, as torch's pooling layers read their sizes."""
    return (value, value) if isinstance(value, int) else tuple(value)


def strided_max(x, kernel, height_dim):
    """Max-pool ``x`` by ``kernel`` with stride ``kernel`` along two dims.

    The image's height is dimension ``height_dim`` of ``x`` (negative), its
    width the next one; a trailing side shorter than the kernel is dropped,
    as by :class:`torch.nn.MaxPool2d`. The values are the pool's bit for bit
    and NaN propagates as there.
    """
    kh, kw = kernel
    width_dim = height_dim + 1
    height = x.shape[height_dim] // kh * kh
    width = x.shape[width_dim] // kw * kw
    # Rows first, then columns: the second pass reads half as much.
    rows = x.narrow(height_dim, 0, height).narrow(width_dim, 0, width)
    return _strided(_strided(rows, height_dim, kh), width_dim, kw)


def _strided(x, dim, k):
    """Elementwise maximum of the ``k`` interleaved slices of ``x`` along ``dim``."""
    index = [slice(None)] * x.ndim
    out = None
    for offset in range(k):
        index[dim] = slice(offset, None, k)
        piece = x[tuple(index)]
        out = piece if out is None else torch.maximum(out, piece)
    return out


class SmallCNN(nn.Sequential):
    """Small convolutional network for images of any size.

    Each convolutional block is a 3x3 convolution (padding 1), the
    nonlinearity and a 2x2 max-pool along every side still at least two
    pixels long; an adaptive average pool then caps the feature map at 4x4
    before the dense head (an identity where the map is no larger). It
    trains on 8x8 digits on a CPU in seconds and accepts 32x32x3 SVHN images
    unchanged.

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
                layers.append(MaxPool2d(pool))
                height, width = height // pool[0], width // pool[1]
            channels = out_channels
        # Pooling a map to its own size copies it: nn.Identity keeps the
        # layer's place (and the parameters' names) at no cost.
        if height <= 4 and width <= 4:
            layers.append(nn.Identity())
        else:
            height, width = min(height, 4), min(width, 4)
            layers.append(nn.AdaptiveAvgPool2d((height, width)))
        layers.append(nn.Flatten())
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
