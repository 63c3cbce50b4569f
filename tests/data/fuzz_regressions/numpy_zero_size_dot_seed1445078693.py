def program(a0, a1, a2):
    v0 = np.dot(a0, a2)
    v1 = np.flip(a2)
    v2 = np.expand_dims(a1, 1)
    v3 = a1 // v1
    v4 = v2.astype(np.float32)
    v5 = np.log(np.abs(v0) + 1)
    return v5
