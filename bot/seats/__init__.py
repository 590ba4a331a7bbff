"""The live seat inventory in Redis: holds, sales and quotas per showtime (``inventory``)."""
