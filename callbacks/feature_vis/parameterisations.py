"""How a rendered image is parameterised: pixels or a Fourier spectrum scaled by 1/frequency, in a
decorrelated band space estimated from the training data, for any number of bands.

The trainable tensor ``z`` (N, bands, H, W) is mapped to the display space [0, 1] (the data module's
``denormalize`` space) by ``sigmoid(offset + M z)``, where ``M`` is the square root of the data's band
covariance (its Cholesky factor, scaled so that its largest column has norm 1) and ``offset`` the logit
of the data's band means: ``z = 0`` is the mean colour, and steps in ``z`` move along the data's own band
correlations (Olah et al., 2017, for RGB; here estimated per data set, so 1-band MNIST, RGB, 4-band SAR
and 8-band multispectral images all work). The data module's ``from_display`` then gives the model input.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

EPSILON = 1e-4  # keeps the means inside (0, 1)
RIDGE = 1e-6  # of the mean band variance: keeps the covariance positive definite, whatever its scale
INIT_STD = 0.01


@dataclass(frozen=True)
class BandStatistics:
    """The mean (bands,) and covariance (bands, bands) of display-space pixels of the training data."""

    mean: torch.Tensor
    covariance: torch.Tensor

    @classmethod
    def of(cls, images: torch.Tensor) -> "BandStatistics":
        """From display-space images (N, bands, H, W)."""
        pixels = images.detach().double().transpose(0, 1).flatten(start_dim=1)
        covariance = torch.cov(pixels) if len(pixels) > 1 else pixels.var().view(1, 1)
        return cls(pixels.mean(dim=1), covariance.view(len(pixels), len(pixels)))

    @property
    def colour_matrix(self) -> torch.Tensor:
        """The lower-triangular ``L`` with ``L L^T`` = the covariance: white noise times ``L`` has the
        data's band correlations, and ``L^{-1} (x - mean)`` whitens the data. The ridge that keeps the
        covariance positive definite scales with the bands' variance: 11-bit multispectral bands in
        [0, 1] (standard deviation about 0.04, correlations about 0.95) have eigenvalues near 1e-4,
        which a fixed 1e-4 would swamp."""
        bands = len(self.mean)
        ridge = RIDGE * max(float(self.covariance.trace()) / bands, 1e-12)
        return torch.linalg.cholesky(self.covariance + ridge * torch.eye(bands, dtype=torch.float64))

    def whiten(self, pixels: torch.Tensor) -> torch.Tensor:
        """Display-space pixels (bands, N) with identity band covariance."""
        centred = pixels.double() - self.mean[:, None]
        return torch.linalg.solve_triangular(self.colour_matrix, centred, upper=False)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"mean": self.mean.tolist(), "covariance": self.covariance.tolist()}))

    @classmethod
    def load(cls, path: Path) -> "BandStatistics":
        values = json.loads(path.read_text())
        return cls(*(torch.tensor(values[key], dtype=torch.float64) for key in ("mean", "covariance")))


class ImageParameterisation(nn.Module):
    """A batch of images (N, bands, H, W) in display space, from a trainable tensor in decorrelated
    band space: ``pixels`` directly, or (``fourier``) a spectrum scaled by 1/frequency."""

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        statistics: BandStatistics,
        fourier: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        count, bands, height, width = shape
        if len(statistics.mean) != bands:
            raise ValueError(f"band statistics of {len(statistics.mean)} bands for {bands}-band images")
        self.size = (height, width)
        self.fourier = fourier
        matrix = statistics.colour_matrix
        self.register_buffer("colour", (matrix / matrix.norm(dim=0).max()).float())
        mean = statistics.mean.clamp(EPSILON, 1 - EPSILON)
        self.register_buffer("offset", torch.logit(mean).float().view(1, bands, 1, 1))
        if fourier:
            self.register_buffer("frequency_scale", frequency_scale(height, width))
            raw_shape = (count, bands, height, width // 2 + 1, 2)
        else:
            raw_shape = shape
        self.raw = nn.Parameter(INIT_STD * torch.randn(raw_shape, generator=generator))

    def decorrelated(self) -> torch.Tensor:
        """``z`` (N, bands, H, W)."""
        if not self.fourier:
            return self.raw
        spectrum = torch.view_as_complex(self.raw) * self.frequency_scale
        return torch.fft.irfft2(spectrum, s=self.size, norm="ortho")

    def forward(self) -> torch.Tensor:
        """The images in display space, in (0, 1)."""
        coloured = torch.einsum("bc,nchw->nbhw", self.colour, self.decorrelated())
        return torch.sigmoid(self.offset + coloured)

    @torch.no_grad()
    def start_from(self, images: torch.Tensor) -> None:
        """Set the parameters so that :meth:`forward` gives ``images`` (display space): DeepDream's start."""
        logits = torch.logit(images.clamp(EPSILON, 1 - EPSILON)) - self.offset
        bands = self.colour.shape[0]
        flat = logits.transpose(0, 1).reshape(bands, -1)
        z = torch.linalg.solve(self.colour, flat).reshape(bands, len(images), *self.size).transpose(0, 1)
        if self.fourier:
            spectrum = torch.fft.rfft2(z, norm="ortho") / self.frequency_scale
            self.raw.copy_(torch.view_as_real(spectrum))
        else:
            self.raw.copy_(z)


def frequency_scale(height: int, width: int) -> torch.Tensor:
    """1/frequency for each coefficient of an ``rfft2`` spectrum (the constant term as the lowest
    frequency), normalised to mean 1: low frequencies move first, which keeps images smooth."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    frequency = (fy**2 + fx**2).sqrt().clamp(min=1.0 / max(height, width))
    scale = 1.0 / frequency
    return scale / scale.mean()
