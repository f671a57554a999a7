"""EncoderDecoder whose sliding-window test averages softmax probabilities."""
from typing import List

import torch
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS


@MODELS.register_module()
class SoftmaxSlideEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` with SemSeg's sliding-window test.

    mmseg's ``slide_inference`` averages the raw class scores of overlapping
    windows. SemSeg (``tool/test.py`` ``scale_process``/``net_process``)
    instead:

    1. pads an input smaller than a window on all sides, centred, with the
       mean colour (0 after normalisation), and crops the padding off the
       result;
    2. slides the same window grid (``ceil((H - crop) / stride) + 1``
       windows per side, the last flush with the border);
    3. turns each window's scores into softmax probabilities, with
       ``test_cfg.window_flip=True`` averaged with those of the horizontally
       flipped window (flipped back);
    4. averages the probabilities where windows overlap.

    ``test_cfg`` keys: ``mode`` ('slide' uses the above, 'whole' is mmseg's),
    ``crop_size``, ``stride`` (as mmseg) and ``window_flip`` (default False).
    The returned ``seg_logits`` of the slide mode are probabilities (their
    argmax is the prediction). Training is mmseg's ``EncoderDecoder``.
    """

    def slide_inference(self, inputs: torch.Tensor,
                        batch_img_metas: List[dict]) -> torch.Tensor:
        h_stride, w_stride = self.test_cfg.stride
        h_crop, w_crop = self.test_cfg.crop_size
        flip = bool(self.test_cfg.get('window_flip', False))
        batch_size, _, h_img, w_img = inputs.shape
        pad_h, pad_w = max(h_crop - h_img, 0), max(w_crop - w_img, 0)
        top, left = pad_h // 2, pad_w // 2
        if pad_h or pad_w:
            inputs = F.pad(inputs, (left, pad_w - left, top, pad_h - top),
                           value=0.)
        h_pad, w_pad = inputs.shape[2:]
        h_grids = -(-(h_pad - h_crop) // h_stride) + 1
        w_grids = -(-(w_pad - w_crop) // w_stride) + 1
        probs = inputs.new_zeros((batch_size, self.out_channels, h_pad, w_pad))
        count = inputs.new_zeros((batch_size, 1, h_pad, w_pad))
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y2 = min(h_idx * h_stride + h_crop, h_pad)
                x2 = min(w_idx * w_stride + w_crop, w_pad)
                y1, x1 = y2 - h_crop, x2 - w_crop
                window = inputs[:, :, y1:y2, x1:x2]
                batch_img_metas[0]['img_shape'] = window.shape[2:]
                if flip:
                    both = torch.cat([window, window.flip(3)])
                    p = self.encode_decode(both, batch_img_metas * 2)
                    p = p.softmax(dim=1)
                    p = (p[:batch_size] + p[batch_size:].flip(3)) / 2
                else:
                    p = self.encode_decode(window, batch_img_metas)
                    p = p.softmax(dim=1)
                probs[:, :, y1:y2, x1:x2] += p
                count[:, :, y1:y2, x1:x2] += 1
        probs = probs / count
        return probs[:, :, top:top + h_img, left:left + w_img]
