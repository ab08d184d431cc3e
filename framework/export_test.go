package framework

// CloudProviderVersion is exported for tests.
const CloudProviderVersion = cloudProviderVersion
