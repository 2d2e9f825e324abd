"""Many files, or one long one: decoding processes that feed one encoder (``pool``) and the driver
that scores a folder or a file's time spans through them (``parallel``)."""
