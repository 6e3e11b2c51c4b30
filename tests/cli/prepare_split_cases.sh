# prepare/split CLI cases (filled in with the data library)
