// The control codec's API is made of JSON values (a request's arguments, a
// reply's result), so whoever imports Wire gets the JSON target with it.
@_exported import JSON
