"""sayo: teach multimodal LLMs to look at the right part of the image.

Implements SAYO ("Do MLLMs Really See It: Reinforcing Visual Attention in Multimodal LLMs",
arXiv 2602.08241): GRPO whose reward adds, to answer accuracy and format, the share of visual
attention that the model's high-entropy answer tokens put on the annotated image region.
"""

__version__ = "0.1.0"
