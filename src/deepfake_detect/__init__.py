"""Tell real face photographs from GAN-generated ones.

Labels everywhere: real = 0, fake = 1, and a score is P(fake).
"""

__version__ = "0.1.0"
