import VFIO
import VTd

/// The seam between the shadow sync and whatever holds the real mappings.
///
/// Production: `Type1Backend`, a VFIO type1 container. Tests use a recording
/// backend from the test-support target; `DryRunBackend` is a user feature for
/// hosts without VFIO. Every call is synchronous: when it returns, the kernel
/// has (or has refused) the mapping, which is what lets an ack mean "mapped".
public protocol DMABackend: AnyObject {
    /// Limits of the host IOMMU: usable IOVA ranges, page sizes, mappings left.
    func limits() throws(VFIOError) -> IOMMUInfo
    /// Map [iova, iova + size) to host virtual memory at `hostAddress`.
    func map(iova: UInt64, size: UInt64, hostAddress: UInt64, permission: DMAPermission) throws(VFIOError)
    /// Unmap exactly [iova, iova + size), which must name whole mappings. An
    /// implementation fails when the kernel unmapped a different size.
    func unmap(iova: UInt64, size: UInt64) throws(VFIOError)
    /// Unmap everything this backend holds.
    func unmapAll() throws(VFIOError)
    /// Unmap whatever lies in [iova, iova + size), which may be nothing, and
    /// return the bytes unmapped. Only for settling a call whose outcome is
    /// unknown (`MappingJournal`): an unmap of a range that may or may not
    /// be mapped is always safe, a guess is not.
    func unmapRange(iova: UInt64, size: UInt64) throws(VFIOError) -> UInt64
}
