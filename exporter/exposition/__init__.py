"""Exposition presents a snapshot; it computes nothing but unit conversions.

Rule: exposition reads ``meter`` snapshots and runtime status and never changes them.
Output is rendered once per tick and served from cached bytes.
"""
