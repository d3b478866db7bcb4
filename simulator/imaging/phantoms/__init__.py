"""Phantoms: analytic objects with exact line integrals, voxel label volumes, breast and QA phantoms."""
