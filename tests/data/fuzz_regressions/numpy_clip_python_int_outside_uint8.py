def program(a0):
    v0 = np.clip(a0, -2, 3)
    v1 = -1 / a0
    v2 = v1.reshape((-1, 2, 4))
    v3 = -1 / v2
    v4 = v1.reshape((16,))
    v5 = np.pad(v3, 0)
    return (v5, v1)
