"""Colour-jitter kernels for float RGB images (``(..., 3, H, W)``), in place, fewer passes.

Each equals torchvision.transforms.v2.functional's kernel for float images up to float
rounding (tests/domainbed/datasets/test_data_cache.py checks it) on pixels in
``[0, bound]``: ``bound`` 1 is torchvision's float range, 255 lets the uint8 pipeline skip a
rescaling pass. The hue kernel is the HSV model of ``v2.functional.adjust_hue`` written as
one ramp per channel, about a sixth of its time: hue rotation was most of the cost of an
augmented image.
"""

import torch

# torchvision's greyscale weights (ITU-R 601-2 luma)
GREY_WEIGHTS = (0.2989, 0.587, 0.114)
_GREY_VECTOR = torch.tensor(GREY_WEIGHTS)
# channel c of HSV -> RGB is top - chroma * clamp(2 - d_c, 0, 1), d_c the circular distance
# (period 6 sextants) from the hue to 3, 5, 1 for R, G, B
_RAMP_CENTRES = (3.0, 5.0, 1.0)


def adjust_brightness_(image: torch.Tensor, factor: float, bound: float = 1.0):
    """``v2.functional.adjust_brightness``, in place."""
    return image.mul_(factor).clamp_(0.0, bound)


def adjust_contrast_(image: torch.Tensor, factor: float, bound: float = 1.0):
    """``v2.functional.adjust_contrast`` (blend with the mean of the greyscale image, i.e.
    the grey-weighted channel means), in place."""
    grey = image.mean(dim=(-2, -1)) @ _GREY_VECTOR  # one dot product per image
    # offset + factor * image in one pass (torch.add's alpha scales its second input)
    offset = ((1.0 - factor) * grey)[..., None, None, None]
    return torch.add(offset, image, alpha=factor, out=image).clamp_(0.0, bound)


def adjust_saturation_(image: torch.Tensor, factor: float, bound: float = 1.0):
    """``v2.functional.adjust_saturation`` (blend with the greyscale image), in place."""
    r, g, b = image.unbind(dim=-3)
    grey = r.mul(GREY_WEIGHTS[0]).add_(g, alpha=GREY_WEIGHTS[1]).add_(b, alpha=GREY_WEIGHTS[2])
    # (1 - factor) grey + factor * image: the blend in one pass over the three channels
    grey.mul_(1.0 - factor)
    return torch.add(grey.unsqueeze(-3), image, alpha=factor, out=image).clamp_(0.0, bound)


def adjust_hue(image: torch.Tensor, hue_factor: float) -> torch.Tensor:
    """``v2.functional.adjust_hue``: rotate the hue by ``hue_factor`` turns keeping HSV
    value and saturation (any pixel scale: the rotation is scale-free). A new tensor."""
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor must be in [-0.5, 0.5], got {hue_factor}")
    # in-place steps and out= keep the number of fresh buffers (and page faults) low
    r, g, b = image.unbind(dim=-3)
    top = torch.maximum(r, g)
    torch.maximum(top, b, out=top)
    bottom = torch.minimum(r, g)
    torch.minimum(bottom, b, out=bottom)
    chroma = top - bottom
    # hue in sextants times the chroma (no division), from the maximal channel, r before g
    # before b on ties (as HSV): float 0/1 masks and lerp are cheaper than comparisons and
    # torch.where on bools
    not_r = torch.sub(top, r).sign_()
    not_g = torch.sub(top, g).sign_()
    hue_c = torch.sub(b, r).add_(chroma, alpha=2.0) \
        .lerp_(torch.sub(r, g).add_(chroma, alpha=4.0), not_g)
    hue_c = torch.sub(g, b).lerp_(hue_c, not_r)
    # channel c's ramp: its centre minus the rotation, wrapped into [-1, 5) like the hue,
    # so that x = hue - centre lies in (-6, 6) and its circular distance (period 6) is
    # 3 - |3 - |x||; then top - chroma * clamp(2 - distance, 0, 1) is
    # clamp(top + chroma - chroma |3 - |x||, bottom, top)
    shift = 6.0 * float(hue_factor)
    centres = torch.tensor([(c - shift + 1.0) % 6.0 - 1.0 for c in _RAMP_CENTRES])
    chroma_c = chroma.unsqueeze(-3)
    out = torch.addcmul(hue_c.unsqueeze(-3), chroma_c, centres.view(3, 1, 1), value=-1.0)
    out.abs_().sub_(chroma_c, alpha=3.0).abs_()
    torch.sub(top.add(chroma).unsqueeze(-3), out, out=out)
    return out.clamp_(bottom.unsqueeze(-3), top.unsqueeze(-3))
