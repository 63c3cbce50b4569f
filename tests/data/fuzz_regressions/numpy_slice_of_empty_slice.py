def program(a0, a1):
    v0 = np.isfinite(a0)
    v1 = a0.astype(np.int64)
    v2 = np.log1p(np.abs(a0))
    v3 = v0 >= v1
    v4 = a1[2:-4:2, -1:6:3]
    v5 = v4[-1:-1:2, 1:1:2]
    return v5
