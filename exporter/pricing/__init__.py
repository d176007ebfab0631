"""Prices: the typed pricing config (``prices``), the dated default catalogue (``catalogue``), and the
price table ``check-config`` prints (``table``)."""
